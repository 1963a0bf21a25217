"""The OpenMM potential with fragmentation="ai2bmd": a protein alone (createSystem) and the protein
of an ML/MM system (createMixedSystem) give the numbers of ViSNetCalculator(fragmentation="ai2bmd")."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from helpers import small_model

openmm = pytest.importorskip("openmm")
openmmml = pytest.importorskip("openmmml")
pytest.importorskip("pdbfixer")
pytest.importorskip("rdkit")
from openmm import app, unit  # noqa: E402

from visnet import ViSNetCalculator  # noqa: E402
from visnet.proteins.building import peptide_pdb  # noqa: E402
from visnet.proteins.reading import openmm_protein, read_protein  # noqa: E402

KJ_PER_MOL = units.mol / units.kJ  # kJ/mol per eV
# float64 end to end; the nm <-> Å round trip of positions and the kJ/mol conversion (1e-16
# relative) are all that differ: 1e-9 relative leaves a wide margin.
RTOL = 1e-9


@pytest.fixture(scope="module")
def peptide(tmp_path_factory):
    """ACE-ALA-SER-NME, hydrogens by PDBFixer: (OpenMM topology, positions, ase.Atoms)."""
    path = peptide_pdb("AS", tmp_path_factory.mktemp("pdb") / "as.pdb", seed=3)
    topology, positions = openmm_protein(path)
    atoms = read_protein(path)  # its own hydrogens: placed anew by each read, so take the positions
    assert atoms.arrays["atomtypes"].tolist() == [a.name for a in topology.atoms()]
    atoms.positions = np.asarray(positions.value_in_unit(unit.angstrom))
    return topology, positions, atoms


def _reference(atoms, cutoff=12.0):
    atoms = atoms.copy()
    atoms.calc = ViSNetCalculator(
        model=small_model(seed=1), fragmentation="ai2bmd", nonbonded_cutoff=cutoff, dtype="float64", accel="eager"
    )
    return atoms.get_potential_energy(), atoms.get_forces()


def _energy_forces(system, positions, groups=None):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True, groups=groups or {0})
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) / KJ_PER_MOL
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return energy, np.asarray(forces) / (KJ_PER_MOL * 10.0)


@pytest.mark.parametrize("cutoff", [12.0, None])
def test_create_system_fragmented_equals_calculator(peptide, cutoff) -> None:
    topology, positions, atoms = peptide
    potential = openmmml.MLPotential(
        "visnet", model=small_model(seed=1), fragmentation="ai2bmd", nonbonded_cutoff=cutoff, accel="eager"
    )
    system = potential.createSystem(topology, dtype="float64", device="cpu")
    energy, forces = _energy_forces(system, positions)
    ref_energy, ref_forces = _reference(atoms, cutoff)
    assert energy == pytest.approx(ref_energy, rel=RTOL)
    np.testing.assert_allclose(forces, ref_forces, rtol=0, atol=RTOL * np.abs(ref_forces).max())


def test_mixed_system_takes_amber_parameters_from_the_mm_system(peptide) -> None:
    """All atoms ML in an Amber14 system: createMixedSystem zeroes every MM pair inside the protein,
    and the fragmented force (group 1) adds back the Amber term between units, from the system's
    own NonbondedForce: the same numbers as the calculator."""
    topology, positions, atoms = peptide
    mm_system = app.ForceField("amber14-all.xml").createSystem(topology, nonbondedMethod=app.NoCutoff)
    potential = openmmml.MLPotential("visnet", model=small_model(seed=1), accel="eager")
    mixed = potential.createMixedSystem(
        topology, mm_system, list(range(topology.getNumAtoms())), fragmentation="ai2bmd", dtype="float64", forceGroup=1
    )
    energy, forces = _energy_forces(mixed, positions, groups={1})
    ref_energy, ref_forces = _reference(atoms)
    assert energy == pytest.approx(ref_energy, rel=RTOL)
    np.testing.assert_allclose(forces, ref_forces, rtol=0, atol=RTOL * np.abs(ref_forces).max())
    mm_energy, _ = _energy_forces(mixed, positions, groups={0})
    assert mm_energy == pytest.approx(0.0, abs=1e-9)  # nothing of the protein is left to the MM side


def test_bad_fragmentation_named(peptide) -> None:
    topology, _, _ = peptide
    with pytest.raises(ValueError, match="fragmentation must be None or one of"):
        openmmml.MLPotential("visnet", model=small_model(), fragmentation="fmo")
    with pytest.raises(ValueError, match="nonbonded_cutoff must be a positive number"):
        openmmml.MLPotential("visnet", model=small_model(), nonbonded_cutoff=-1.0)
    potential = openmmml.MLPotential("visnet", model=small_model(), fragmentation="ai2bmd", accel="eager")
    mm_system = app.ForceField("amber14-all.xml").createSystem(topology, nonbondedMethod=app.NoCutoff)
    for k in reversed(range(mm_system.getNumForces())):
        if isinstance(mm_system.getForce(k), openmm.NonbondedForce):
            mm_system.removeForce(k)
    with pytest.raises(ValueError, match="needs its MM NonbondedForce"):
        potential.createMixedSystem(topology, mm_system, list(range(10)))
