"""OpenMM potential 'visnet' (openmmml entry point): same numbers as ViSNetCalculator, periodic boxes, ML/MM, MD."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units
from ase.io import read

openmm = pytest.importorskip("openmm")
openmmml = pytest.importorskip("openmmml")
from openmm import app, unit  # noqa: E402

from visnet import ViSNetCalculator  # noqa: E402

STRUCTURES = Path(__file__).resolve().parents[2] / "visnet" / "pretrained" / "structures"
KJ_PER_MOL = units.mol / units.kJ  # kJ/mol per eV (the factor the potential uses)
# float64 end to end: the only differences are the order of a few sums (~1e-15) and the nm <-> Å
# round trip of the positions (1e-16 relative); 1e-6 is the bound, met with a wide margin.
RTOL = 1e-6


def topology_of(atoms: Atoms) -> app.Topology:
    """One-residue OpenMM topology of ``atoms`` (box from the cell when periodic)."""
    topology = app.Topology()
    residue = topology.addResidue("MOL", topology.addChain())
    for i, (symbol, z) in enumerate(zip(atoms.get_chemical_symbols(), atoms.numbers)):
        topology.addAtom(f"{symbol}{i}", app.Element.getByAtomicNumber(int(z)), residue)
    if atoms.pbc.all():
        topology.setPeriodicBoxVectors(np.asarray(atoms.cell) * 0.1 * unit.nanometer)
    return topology


def context_of(system: openmm.System, atoms: Atoms, integrator: openmm.Integrator | None = None) -> openmm.Context:
    integrator = integrator or openmm.VerletIntegrator(0.0005 * unit.picosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    if atoms.pbc.all():
        context.setPeriodicBoxVectors(*(np.asarray(atoms.cell) * 0.1))
    context.setPositions(atoms.positions * 0.1)
    return context


def energy_forces(context: openmm.Context, groups: set[int] | None = None) -> tuple[float, np.ndarray]:
    """(eV, (N, 3) eV/Å) of the context's state."""
    state = context.getState(getEnergy=True, getForces=True, groups=groups or {0})
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) / KJ_PER_MOL
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return energy, np.asarray(forces) / (KJ_PER_MOL * 10.0)


def reference(atoms: Atoms) -> tuple[float, np.ndarray]:
    atoms = atoms.copy()
    atoms.calc = ViSNetCalculator(device="cpu", dtype="float64")
    return atoms.get_potential_energy(), atoms.get_forces()


@pytest.fixture(scope="module")
def potential():
    return openmmml.MLPotential("visnet")


@pytest.fixture
def ethanol_atoms() -> Atoms:
    return read(STRUCTURES / "ethanol.xyz")


def two_molecule_box() -> Atoms:
    """Ethanol and malonaldehyde in a 9 Å cubic box: periodic images within the 5 Å cutoff."""
    first, second = read(STRUCTURES / "ethanol.xyz"), read(STRUCTURES / "malonaldehyde.xyz")
    first.positions -= first.positions.mean(axis=0) - 2.0
    second.positions -= second.positions.mean(axis=0) - 6.5
    atoms = first + second
    atoms.set_cell([9.0, 9.0, 9.0])
    atoms.pbc = True
    return atoms


def test_entry_point_is_registered():
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="openmmml.potentials") if e.name == "visnet"]
    assert entry.value == "visnet.integrations.openmm:ViSNetPotentialImplFactory"
    with pytest.raises(TypeError):  # openmm-ml found the factory: unknown options reach our impl
        openmmml.MLPotential("visnet", no_such_option=1)


def test_molecule_matches_calculator(potential, ethanol_atoms):
    system = potential.createSystem(topology_of(ethanol_atoms), device="cpu", dtype="float64")
    energy, forces = energy_forces(context_of(system, ethanol_atoms))
    ref_energy, ref_forces = reference(ethanol_atoms)
    assert energy == pytest.approx(ref_energy, rel=RTOL)
    np.testing.assert_allclose(forces, ref_forces, rtol=RTOL, atol=RTOL * np.abs(ref_forces).max())


def test_periodic_box_matches_calculator(potential):
    atoms = two_molecule_box()
    topology = topology_of(atoms)
    system = potential.createSystem(topology, device="cpu", dtype="float64")
    assert system.usesPeriodicBoundaryConditions()
    energy, forces = energy_forces(context_of(system, atoms))
    ref_energy, ref_forces = reference(atoms)
    assert energy == pytest.approx(ref_energy, rel=RTOL)
    np.testing.assert_allclose(forces, ref_forces, rtol=RTOL, atol=RTOL * np.abs(ref_forces).max())
    # The box is read from the state: a molecule moved by a box vector gives the same energy.
    shifted = atoms.copy()
    shifted.positions[:9] += atoms.cell[0]
    assert energy_forces(context_of(system, shifted))[0] == pytest.approx(energy, rel=1e-12)


def test_model_file_and_float32(potential, ethanol_atoms, tmp_path):
    from visnet import load_model, save_model

    path = save_model(load_model("default"), tmp_path / "copy.pt")
    system = openmmml.MLPotential("visnet", model=str(path), dtype="float32").createSystem(
        topology_of(ethanol_atoms), device="cpu"
    )
    energy, forces = energy_forces(context_of(system, ethanol_atoms))
    ref_energy, ref_forces = reference(ethanol_atoms)
    # float32 model: ~1e-7 relative per op, 1e-5 of the energy and of the largest force.
    assert energy == pytest.approx(ref_energy, rel=1e-5)
    np.testing.assert_allclose(forces, ref_forces, atol=1e-5 * np.abs(ref_forces).max() + 1e-5)


def test_mixed_system_puts_the_model_on_the_subset(potential):
    """createMixedSystem (openmm-ml's mechanical embedding): ML force on the first molecule only."""
    atoms = two_molecule_box()
    topology = topology_of(atoms)
    mm = openmm.System()
    for mass in atoms.get_masses():
        mm.addParticle(mass)
    mm.setDefaultPeriodicBoxVectors(*(np.asarray(atoms.cell) * 0.1))
    nonbonded = openmm.NonbondedForce()
    nonbonded.setNonbondedMethod(openmm.NonbondedForce.CutoffPeriodic)
    nonbonded.setCutoffDistance(0.4)
    for _ in range(len(atoms)):
        nonbonded.addParticle(0.0, 0.3, 0.1)
    mm.addForce(nonbonded)
    ml_atoms = list(range(9))
    system = potential.createMixedSystem(topology, mm, ml_atoms, forceGroup=1, device="cpu", dtype="float64")
    context = context_of(system, atoms)
    energy, forces = energy_forces(context, groups={1})
    ref_energy, ref_forces = reference(atoms[ml_atoms])
    assert energy == pytest.approx(ref_energy, rel=RTOL)
    np.testing.assert_allclose(forces[:9], ref_forces, rtol=RTOL, atol=RTOL * np.abs(ref_forces).max())
    assert np.all(forces[9:] == 0.0)


def test_unknown_element_is_named(potential):
    atoms = Atoms("CCl", positions=[[0, 0, 0], [1.8, 0, 0]])
    with pytest.raises(ValueError, match=r"atom 1 \(Cl1 in MOL.*Cl.*covers H, C, N, O"):
        potential.createSystem(topology_of(atoms), device="cpu")


def test_property_model_is_refused_naming_its_property(ethanol_atoms):
    potential = openmmml.MLPotential("visnet", model="qm9_gap")
    with pytest.raises(ValueError, match="needs an energy model.*'gap'"):
        potential.createSystem(topology_of(ethanol_atoms), device="cpu")


def run_langevin(atoms: Atoms, potential, steps: int, dt_fs: float, temperature: float) -> np.ndarray:
    """Temperatures (K) every 10 steps of a LangevinMiddleIntegrator run from Maxwell-Boltzmann velocities."""
    system = potential.createSystem(topology_of(atoms), device="cpu", dtype="float32")
    integrator = openmm.LangevinMiddleIntegrator(
        temperature * unit.kelvin, 5.0 / unit.picosecond, dt_fs * unit.femtosecond
    )
    integrator.setRandomNumberSeed(1)
    context = context_of(system, atoms, integrator)
    context.setVelocitiesToTemperature(temperature * unit.kelvin, 1)
    dof = 3 * len(atoms) - 3  # the CMMotionRemover takes 3
    temperatures = []
    for _ in range(steps // 10):
        integrator.step(10)
        state = context.getState(getEnergy=True, getPositions=True)
        kinetic = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        assert np.isfinite(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        assert np.isfinite(state.getPositions(asNumpy=True)._value).all()
        temperatures.append(
            2 * kinetic / (dof * unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin))
        )
    return np.array(temperatures)


def test_short_langevin_run_stays_finite_and_warm(potential, ethanol_atoms):
    temperatures = run_langevin(ethanol_atoms, potential, steps=300, dt_fs=0.5, temperature=300.0)
    # 21 degrees of freedom: the instantaneous T fluctuates by ~30 %; the second half's mean is
    # well inside a factor 2 of the target.
    assert 150.0 < temperatures[len(temperatures) // 2 :].mean() < 450.0


@pytest.mark.slow
def test_one_picosecond_langevin_run(potential):
    temperatures = run_langevin(read(STRUCTURES / "aspirin.xyz"), potential, steps=2000, dt_fs=0.5, temperature=300.0)
    # aspirin: 60 degrees of freedom, ~18 % instantaneous fluctuation; mean of the last 0.5 ps.
    assert 220.0 < temperatures[len(temperatures) // 2 :].mean() < 380.0
