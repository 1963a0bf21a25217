"""ASE ``Atoms`` into a LAMMPS instance: ``create_atoms(lmp, atoms)`` defines the box, types and atoms.

For Python drivers and tests that start from an ASE structure instead of a LAMMPS data file. The
cell is rotated into LAMMPS's restricted triclinic form (a along x, b in the xy plane;
``ase.cell.Cell.standard_form``) with the positions; one atom type per element, in order of
first appearance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, chemical_symbols

__all__ = ["create_atoms", "lammps_frame"]


def create_atoms(lmp: Any, atoms: Atoms, units: str = "metal") -> list[str]:
    """Define ``units``, an atomic box and the atoms of ``atoms`` in ``lmp`` (no box yet).

    Args:
        lmp: a fresh ``lammps.lammps``. atoms: the structure; periodic directions become
            ``p`` boundaries, the others ``f`` (a cell of zero length there gets the atoms' extent
            plus 10 Å). units: "metal" or "real" (lengths are Å in both).

    Returns:
        The element of each atom type, type 1 first (what ``ViSNetLammps(elements=...)`` takes).

    Raises:
        ValueError: no atoms, or a non-periodic direction without room for the atoms.
    """
    if len(atoms) == 0:
        raise ValueError("the structure has no atoms")
    cell, pos = _lammps_frame(atoms)
    symbols = list(dict.fromkeys(atoms.get_chemical_symbols()))
    types = [symbols.index(s) + 1 for s in atoms.get_chemical_symbols()]
    boundary = " ".join("p" if p else "f" for p in atoms.pbc)
    (lx, _, _), (xy, ly, _), (xz, yz, lz) = (map(float, row) for row in cell)
    masses = "\n".join(
        f"mass {t} {float(atomic_masses[chemical_symbols.index(s)])!r}" for t, s in enumerate(symbols, 1)
    )
    lmp.commands_string(
        f"""
        units {units}
        atom_style atomic
        atom_modify map yes
        boundary {boundary}
        region visnet_box prism 0 {lx!r} 0 {ly!r} 0 {lz!r} {xy!r} {xz!r} {yz!r}
        create_box {len(symbols)} visnet_box
        {masses}
        """
    )
    ids = list(range(1, len(atoms) + 1))  # atom i of ``atoms`` is ID i + 1 on any number of ranks
    lmp.create_atoms(len(atoms), ids, types, pos.ravel().tolist())
    if lmp.get_natoms() != len(atoms):
        raise ValueError(f"{len(atoms) - lmp.get_natoms()} atom(s) lie outside the box in a non-periodic direction")
    return symbols


def lammps_frame(atoms: Atoms) -> Atoms:
    """A copy of ``atoms`` rotated into LAMMPS's box frame, as ``create_atoms`` defines it."""
    cell, pos = _lammps_frame(atoms)
    return Atoms(atoms.numbers, positions=pos, cell=cell, pbc=atoms.pbc)


def _lammps_frame(atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """(3, 3) lower-triangular cell and (N, 3) positions (wrapped in periodic directions, shifted
    into the box in the others) of ``atoms`` in LAMMPS's frame."""
    atoms = atoms.copy()
    lengths = atoms.cell.lengths()
    for axis in np.flatnonzero(~atoms.pbc & (lengths == 0)):  # room for the atoms, 5 Å each side
        atoms.cell[axis] = np.eye(3)[axis] * (np.ptp(atoms.positions[:, axis]) + 10.0)
        atoms.positions[:, axis] += 5.0 - atoms.positions[:, axis].min()
    cell = atoms.cell.standard_form()[0].array
    rotation = np.linalg.solve(atoms.cell.array, cell)
    pos = atoms.positions @ rotation
    frac = np.linalg.solve(cell.T, pos.T).T
    frac[:, atoms.pbc] %= 1.0
    return cell, frac @ cell
