"""Proteins from PDB or mmCIF files: OpenMM/PDBFixer reading, checks, missing hydrogens added.

What happens to each kind of imperfect input (a one-line ValueError names residue and chain):

* missing heavy atoms or residues (SEQRES gaps): an error; ``fix=True`` lets PDBFixer build them;
* non-standard (modified) residues: an error; ``fix=True`` replaces them by their standard parent;
* water, ions, ligands: an error; ``heterogens="remove"`` drops them (ligands are not modelled);
* alternate locations: the first location of each atom is kept (OpenMM's reader) with a warning;
* chain breaks (a C-N gap > 2 Å between consecutive residues): an error (split the chain, TER);
* hydrogens: missing ones added at ``ph`` by OpenMM's Modeller (termini charged, as Amber);
  ``add_hydrogens=False`` keeps the file as it is (fragmentation then refuses residues without H).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from visnet.proteins.forcefield import attach_amber_parameters
from visnet.proteins.residues import AMINO_ACIDS, CAPS

__all__ = [
    "PROTEIN_SUFFIXES",
    "AlternateLocationWarning",
    "atoms_from_openmm",
    "is_protein_file",
    "read_protein",
    "openmm_protein",
]

PROTEIN_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".pdbx")
HETEROGENS = ("error", "remove")
MAX_PEPTIDE_BOND = 2.0  # Å


class AlternateLocationWarning(UserWarning):
    """The file had alternate locations; only the first of each atom was kept."""


def is_protein_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a PDB or mmCIF file (by suffix)."""
    return Path(path).suffix.lower() in PROTEIN_SUFFIXES


def read_protein(
    path: str | os.PathLike,
    *,
    add_hydrogens: bool = True,
    ph: float = 7.0,
    fix: bool = False,
    heterogens: str = "error",
    amber: bool = True,
) -> Atoms:
    """A protein from a PDB/mmCIF file as ``ase.Atoms`` with residue arrays.

    Args:
        path: .pdb/.ent or .cif/.mmcif file.
        add_hydrogens: add missing hydrogens (OpenMM Modeller, protonation states at ``ph``).
        fix: build missing heavy atoms and residues and replace modified residues (PDBFixer).
        heterogens: "error" (water, ions or ligands are refused) or "remove" (dropped).
        amber: attach Amber14 non-bonded parameters (arrays mm_charges e, mm_sigmas Å,
            mm_epsilons eV), needed by ``fragmentation="ai2bmd"`` with ``nonbonded="amber14"``.

    Returns:
        Atoms (Å) in the file's residue order with arrays residuenames, residuenumbers,
        atomtypes, chainids; ``info["name"]`` the file stem, ``info["source"]`` the path.

    Raises:
        FileNotFoundError: no such file. ValueError: unreadable file, or input the module
            docstring lists (naming residue and chain).
    """
    topology, positions = openmm_protein(path, add_hydrogens=add_hydrogens, ph=ph, fix=fix, heterogens=heterogens)
    atoms = atoms_from_openmm(topology, positions)
    if amber and add_hydrogens:
        attach_amber_parameters(atoms, topology)
    atoms.info.update(name=Path(path).stem, source=str(path))
    return atoms


def openmm_protein(
    path: str | os.PathLike,
    *,
    add_hydrogens: bool = True,
    ph: float = 7.0,
    fix: bool = False,
    heterogens: str = "error",
) -> tuple[Any, Any]:
    """The checked (and completed) protein of ``read_protein`` as OpenMM (topology, positions in nm)."""
    if heterogens not in HETEROGENS:
        raise ValueError(f"heterogens must be one of {HETEROGENS}, got {heterogens!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"protein file not found: {path}")
    fixer = _read(path)
    _warn_alternate_locations(path)
    _nonstandard(fixer, fix)  # before heterogens: a modified residue is not a ligand
    _heterogens(fixer, heterogens)
    _missing(fixer, fix)
    _check_chain_breaks(fixer.topology, fixer.positions)
    if add_hydrogens:
        try:
            fixer.addMissingHydrogens(ph)
        except Exception as err:  # OpenMM names the residue it has no template for
            raise ValueError(f"cannot add hydrogens to {path}: {str(err).splitlines()[0]}") from None
    return fixer.topology, fixer.positions


def _read(path: Path) -> Any:
    from pdbfixer import PDBFixer

    try:
        return PDBFixer(filename=str(path))
    except Exception as err:  # the readers raise many kinds for bad files
        raise ValueError(f"cannot read protein file {path}: {type(err).__name__}: {str(err)[:200]}") from None


def _label(residue: Any) -> str:
    return f"chain {residue.chain.id} {residue.name} {residue.id}"


def _heterogens(fixer: Any, mode: str) -> None:
    foreign = [r for r in fixer.topology.residues() if r.name not in AMINO_ACIDS | CAPS]
    if not foreign:
        return
    if mode == "remove":
        fixer.removeHeterogens(keepWater=False)
        return
    raise ValueError(
        f"{_label(foreign[0])}: water, ion or ligand ({len(foreign)} such residues); "
        "read_protein(..., heterogens='remove') drops them"
    )


def _nonstandard(fixer: Any, fix: bool) -> None:
    fixer.findNonstandardResidues()
    if not fixer.nonstandardResidues:
        return
    if fix:
        fixer.replaceNonstandardResidues()
        return
    residue, parent = fixer.nonstandardResidues[0]
    raise ValueError(f"{_label(residue)}: non-standard residue (a modified {parent}); fix=True replaces it by {parent}")


def _missing(fixer: Any, fix: bool) -> None:
    fixer.findMissingResidues()
    fixer.findMissingAtoms()
    if fix:
        fixer.addMissingAtoms()
        return
    if fixer.missingResidues:
        (chain_index, at), names = next(iter(fixer.missingResidues.items()))
        chain = list(fixer.topology.chains())[chain_index]
        raise ValueError(
            f"chain {chain.id}: {len(names)} missing residue(s) ({' '.join(names[:5])}) before residue position "
            f"{at} (SEQRES); fix=True builds them"
        )
    if fixer.missingAtoms:
        residue, atoms = next(iter(fixer.missingAtoms.items()))
        raise ValueError(
            f"{_label(residue)}: missing heavy atom(s) {', '.join(a.name for a in atoms)}; fix=True builds them"
        )


def _check_chain_breaks(topology: Any, positions: Any) -> None:
    pos = np.asarray(positions.value_in_unit(positions.unit)) * _to_angstrom(positions)
    for chain in topology.chains():
        residues = list(chain.residues())
        for prev, res in zip(residues, residues[1:]):
            c = next((a.index for a in prev.atoms() if a.name == "C"), None)
            n = next((a.index for a in res.atoms() if a.name == "N"), None)
            if c is None or n is None:
                continue
            gap = float(np.linalg.norm(pos[c] - pos[n]))
            if gap > MAX_PEPTIDE_BOND:
                raise ValueError(
                    f"chain break in chain {chain.id} between {prev.name} {prev.id} and {res.name} {res.id} "
                    f"(C-N {gap:.1f} Å): missing residues? give them in SEQRES and use fix=True, or split the chain (TER)"
                )


def _to_angstrom(quantity: Any) -> float:
    from openmm import unit

    return (1.0 * quantity.unit).value_in_unit(unit.angstrom)


def _warn_alternate_locations(path: Path) -> None:
    if path.suffix.lower() not in (".pdb", ".ent"):
        return
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.startswith(("ATOM", "HETATM"))]
    alternates = sum(1 for ln in lines if len(ln) > 16 and ln[16] not in " A")
    if alternates:
        warnings.warn(
            f"{path}: {alternates} atom record(s) are alternate locations; the first location of each atom is kept",
            AlternateLocationWarning,
            stacklevel=3,
        )


def atoms_from_openmm(topology: Any, positions: Any | None, indices: Sequence[int] | None = None) -> Atoms:
    """``ase.Atoms`` (Å) with residue arrays from an OpenMM topology and positions (a quantity;
    None: all zeros), of all atoms or only those at ``indices`` (positions then of those only)."""
    atoms_list = list(topology.atoms())
    if indices is not None:
        atoms_list = [atoms_list[i] for i in indices]
    if positions is None:
        pos = np.zeros((len(atoms_list), 3))
    else:
        pos = np.asarray(positions.value_in_unit(positions.unit), dtype=np.float64) * _to_angstrom(positions)
    atoms = Atoms(numbers=[a.element.atomic_number for a in atoms_list], positions=pos)
    atoms.set_array("residuenames", np.array([a.residue.name for a in atoms_list], dtype="U4"))
    atoms.set_array("residuenumbers", np.array([_number(a.residue) for a in atoms_list], dtype=np.int64))
    atoms.set_array("atomtypes", np.array([a.name for a in atoms_list], dtype="U4"))
    atoms.set_array("chainids", np.array([a.residue.chain.id for a in atoms_list], dtype="U4"))
    return atoms


def _number(residue: Any) -> int:
    digits = "".join(ch for ch in str(residue.id) if ch.isdigit() or ch == "-")
    try:
        return int(digits)
    except ValueError:
        return residue.index + 1
