"""One validator for ASE structures at the inference entry points (calculator, predict, MD).

Every check an ``Atoms`` object needs before any model work, done once per structure, with a
``ValueError`` that names the culprit (the element, the atom, the periodic direction). What only
the model can see (coincident atoms, a cell too small for the cutoff) the model checks itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

__all__ = ["check_atoms", "check_elements", "check_geometry"]


def _symbols(numbers: Sequence[int]) -> str:
    return ", ".join(f"{chemical_symbols[z] if 0 < z < len(chemical_symbols) else '?'} (Z={z})" for z in numbers)


def check_elements(numbers: np.ndarray, known: frozenset[int]) -> None:
    """Raise ValueError naming the elements of ``numbers`` (N,) that are not in ``known``."""
    unknown = sorted(set(int(z) for z in np.unique(numbers)) - known)
    if unknown:
        first = int(np.flatnonzero(np.isin(numbers, unknown))[0])
        covered = ", ".join(chemical_symbols[z] for z in sorted(known))
        if len(known) > 20:
            covered = f"Z {min(known)}..{max(known)}"
        raise ValueError(
            f"the model was not trained on element(s) {_symbols(unknown)} (first at atom {first}); it covers {covered}"
        )


def check_geometry(atoms: Atoms) -> None:
    """Raise ValueError for no atoms, non-finite positions or a periodic direction without a cell vector."""
    if len(atoms) == 0:
        raise ValueError("empty structure: the Atoms object holds no atoms")
    finite = np.isfinite(atoms.positions).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(f"atoms {bad[:10].tolist()} have non-finite positions (NaN or inf)")
    pbc, cell = np.asarray(atoms.pbc, dtype=bool), np.asarray(atoms.cell)
    if pbc.any():
        if not np.isfinite(cell).all():
            raise ValueError("the cell has non-finite entries")
        rows = cell[pbc]
        if np.linalg.matrix_rank(rows, tol=1e-8) < len(rows):
            axes = "".join("xyz"[k] for k in np.flatnonzero(pbc))
            raise ValueError(
                f"atoms are periodic along {axes} (pbc={pbc.tolist()}) but the cell vectors there are zero or "
                f"degenerate: {rows.tolist()}; set atoms.cell, or atoms.pbc = False for a molecule"
            )


def check_atoms(atoms: Atoms, elements: frozenset[int]) -> None:
    """Every check of one structure: its elements are in ``elements``, then ``check_geometry``."""
    check_elements(atoms.numbers, elements)
    check_geometry(atoms)
