"""Residue bookkeeping refusals that fragmentation depends on: disulfide bonds."""

from __future__ import annotations

import numpy as np
import pytest

from visnet.proteins.building import peptide_from_sequence
from visnet.proteins.topology import ProteinTopology


def _bridged(sequence: str = "CAAC", distance: float = 2.05):
    """The peptide with both cysteines' HG removed and the last SG moved to ``distance`` Å of the first."""
    atoms = peptide_from_sequence(sequence)
    names = np.char.strip(atoms.arrays["atomtypes"].astype(str))
    del atoms[[i for i, name in enumerate(names) if name == "HG1"]]
    sulfurs = np.flatnonzero(np.char.strip(atoms.arrays["atomtypes"].astype(str)) == "SG")
    direction = atoms.positions[sulfurs[1]] - atoms.positions[sulfurs[0]]
    positions = atoms.positions.copy()
    positions[sulfurs[1]] = positions[sulfurs[0]] + distance * direction / np.linalg.norm(direction)
    atoms.positions = positions
    return atoms


def test_disulfide_bond_is_a_one_line_error_naming_both_cysteines() -> None:
    with pytest.raises(ValueError, match=r"^disulfide bond between chain A CYS 1 and chain A CYS 4: not supported"):
        ProteinTopology.from_atoms(_bridged())


def test_cysteines_far_apart_are_no_disulfide() -> None:
    topology = ProteinTopology.from_atoms(peptide_from_sequence("CAAC"))
    assert [r.name for r in topology.residues if r.name == "CYS"] == ["CYS", "CYS"]


def test_cyx_residue_is_refused_with_its_reason() -> None:
    atoms = peptide_from_sequence("ACA")
    names = atoms.arrays["residuenames"].astype(str)
    atoms.arrays["residuenames"] = np.where(np.char.strip(names) == "CYS", "CYX", names)
    with pytest.raises(ValueError, match=r"chain A CYX 2: not a standard amino acid .*a disulfide-bonded cysteine"):
        ProteinTopology.from_atoms(atoms)
