"""MD drivers: energy conservation, thermostats, outputs, blow-up guard, structure input, CLI.

Random small float64 models stand in for a trained one. Such a model has no chemical bonds:
molecules slowly fall apart and atoms may pass through each other (its energy stays smooth and
bounded), so runs that are about thermostats switch the distance guard nearly off.
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read
from conftest import randomize_biases

from visnet import ViSNet, ViSNetCalculator, save_model
from visnet.cli import main as visnet_main
from visnet.cli.md import main as md_main
from visnet.dynamics import (
    BlowUpGuard,
    GuardLimits,
    MDConfig,
    atoms_from_smiles,
    closest_pair,
    load_structure,
    named_structures,
    run_md,
)
from visnet.dynamics.statistics import integrated_autocorrelation_time, temperature_stats
from visnet.io.model_files import PRETRAINED_DIR


def random_model(
    hidden: int = 32, layers: int = 2, bias_scale: float = 0.2, num_heads: int = 4, num_rbf: int = 16, seed: int = 0
) -> ViSNet:
    """Random float64 ViSNet; with the defaults forces on ethanol are ~0.1–0.6 eV/Å (the cosine
    envelope: the thresholds below were measured with it; the polynomial's random forces are larger)."""
    torch.manual_seed(seed)
    model = ViSNet(
        hidden_channels=hidden,
        num_layers=layers,
        num_rbf=num_rbf,
        num_heads=num_heads,
        cutoff=4.0,
        max_z=10,
        cutoff_type="cosine",
    )
    return randomize_biases(model.double(), scale=bias_scale, seed=seed)


@pytest.fixture(scope="module")
def model() -> ViSNet:
    return random_model()


@pytest.fixture(scope="module")
def cheap_model() -> ViSNet:
    return random_model(hidden=16, layers=1, bias_scale=0.05, num_heads=2, num_rbf=8)


def quiet(tmp_path, **kwargs) -> MDConfig:
    """MDConfig writing to tmp_path, without progress bar or plots unless asked."""
    return MDConfig(**{"output_dir": tmp_path, "progress": False, "plots": False, **kwargs})


# --------------------------------------------------------------------------- physics


def test_nve_conserves_energy(model, tmp_path):
    """Velocity Verlet with exact forces conserves a shadow Hamiltonian: |E(t) − E(0)| stays
    bounded and scales as dt², with no secular drift. So (1) halving dt must shrink the error
    ~4× (a force that is not −dE/dR, or a unit slip between energy and forces, gives an error
    that does not shrink with dt); (2) at 0.25 fs the error stays below 1e-4 eV/atom, ~250× below
    kT at 300 K and ~6× the observed 1.6e-5 eV/atom of this model (forces up to ~0.6 eV/Å, as
    for molecules at 300–500 K)."""
    errors = {}
    for dt, steps in ((0.5, 200), (0.25, 400)):  # the same 100 fs
        config = quiet(
            tmp_path,
            structure="ethanol",
            model=model,
            ensemble="nve",
            timestep=dt,
            steps=steps,
            log_interval=1,
            traj_interval=100,
            min_distance=0.1,
        )
        result = run_md(config)
        assert result.completed, result.message
        errors[dt] = result.drift
    assert errors[0.25].max_deviation < 1e-4
    assert abs(errors[0.25].drift) * errors[0.25].duration < 1e-4
    ratio = errors[0.5].max_deviation / errors[0.25].max_deviation
    assert 2.5 < ratio < 6.0, ratio


@pytest.mark.parametrize("ensemble", ["langevin", "bussi", "baoab"])
def test_thermostats_hold_the_target_temperature(cheap_model, tmp_path, ensemble):
    """Aspirin (60 degrees of freedom) at 500 K, 0.8 ps with a 20 fs thermostat time: the mean
    temperature after 0.16 ps is within 10 % of the target (statistical error ~3 %; ASE's Langevin
    with the default fixcm=True ran ~45 % hot on a small molecule)."""
    config = quiet(
        tmp_path,
        structure="aspirin",
        model=cheap_model,
        ensemble=ensemble,
        temperature=500.0,
        timestep=1.0,
        steps=800,
        friction=50.0,
        log_interval=5,
        traj_interval=800,
        min_distance=0.01,
    )
    result = run_md(config)
    assert result.completed, result.message
    temperature = result.thermo["temperature"]
    mean = temperature[len(temperature) // 5 :].mean()
    assert mean == pytest.approx(500.0, rel=0.10)


def test_npt_runs_on_a_periodic_box(cheap_model, tmp_path):
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(2)] * 3, indexing="ij"), -1).reshape(-1, 3)
    atoms = Atoms("CHON" * 2, positions=grid * 2.5 + 0.1 * rng.standard_normal((8, 3)), cell=[5.0] * 3, pbc=True)
    volume = atoms.get_volume()
    config = quiet(
        tmp_path,
        model=cheap_model,
        ensemble="npt",
        temperature=300.0,
        pressure=1e4,
        steps=20,
        timestep=0.5,
        log_interval=5,
    )
    result = run_md(config, atoms=atoms)
    assert result.completed, result.message
    assert result.atoms.get_volume() != pytest.approx(volume, rel=1e-9)
    assert "stress" in (result.paths.log.read_text().splitlines()[0])


# --------------------------------------------------------------------------- outputs


def test_outputs_are_written_and_readable(model, tmp_path):
    config = quiet(
        tmp_path,
        structure="ethanol",
        model=model,
        ensemble="bussi",
        steps=20,
        log_interval=5,
        traj_interval=5,
        plots=True,
        progress=True,
    )
    result = run_md(config)
    assert result.completed
    paths = result.paths
    traj, extxyz = read(paths.traj, ":"), read(paths.extxyz, ":")
    assert len(traj) == len(extxyz) == 5  # steps 0, 5, ..., 20
    np.testing.assert_allclose(extxyz[-1].positions, traj[-1].positions, atol=1e-6)
    # physical (unconstrained) forces are stored, equal to the calculator's
    physical = result.atoms.get_forces(apply_constraint=False)
    np.testing.assert_allclose(traj[-1].get_forces(apply_constraint=False), physical)
    assert np.isfinite(extxyz[-1].get_potential_energy())
    assert len(paths.log.read_text().splitlines()) == 1 + 5
    assert [p.name for p in result.plots] == ["ethanol_bussi_energy.png", "ethanol_bussi_temperature.png"]
    assert all(p.stat().st_size > 1000 for p in result.plots)


# --------------------------------------------------------------------------- blow-up guard


def test_guard_detects_each_problem():
    atoms = Atoms("OH", positions=[[0, 0, 0], [0.3, 0, 0]])
    atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=[[0, 0, 0], [0, 0, 1.0]])
    limits = GuardLimits(max_force=50.0, min_distance=0.5, max_temperature=2000.0)
    assert "atoms 0 (O) and 1 (H) are 0.300 Å apart" in BlowUpGuard(atoms, limits).problem()
    atoms.positions[1, 0] = 1.0
    atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=[[0, 0, 0], [0, 0, 80.0]])
    assert "force on atom 1 (H) is 80 eV/Å" in BlowUpGuard(atoms, limits).problem()
    atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=np.zeros((2, 3)))
    atoms.set_velocities([[0, 0, 0], [5.0, 0, 0]])  # Å per ASE time unit: ~5·10^4 K
    assert "runaway" in BlowUpGuard(atoms, limits).problem()
    atoms.set_velocities(np.zeros((2, 3)))
    assert BlowUpGuard(atoms, limits).problem() is None
    # periodic images count
    box = Atoms("H2", positions=[[0.1, 0, 0], [4.7, 0, 0]], cell=[5, 5, 5], pbc=True)
    i, j, distance = closest_pair(box, 0.5)
    assert {i, j} == {0, 1} and distance == pytest.approx(0.4)


def test_guard_stops_a_crafted_collision_and_keeps_good_frames(model, tmp_path):
    """An H atom of ethanol shot at its oxygen at 0.2 Å/fs: the guard stops the run when they
    come closer than 0.5 Å; every frame on disk is from before that and is readable."""
    atoms = load_structure("ethanol")
    oxygen = int(np.flatnonzero(atoms.numbers == 8)[0])
    hydrogen = int(np.argmin(np.where(atoms.numbers == 1, atoms.get_distances(oxygen, range(len(atoms))), np.inf)))
    toward = atoms.positions[oxygen] - atoms.positions[hydrogen]
    velocities = np.zeros((len(atoms), 3))
    velocities[hydrogen] = 0.2 * toward / np.linalg.norm(toward) / units.fs  # Å/fs -> ASE units
    atoms.set_velocities(velocities)
    config = quiet(
        tmp_path,
        model=model,
        ensemble="nve",
        timestep=0.1,
        steps=200,
        log_interval=1,
        traj_interval=1,
        keep_velocities=True,
        max_temperature=1e7,
    )
    result = run_md(config, atoms=atoms)
    assert not result.completed
    assert "min_distance" in result.message and str(result.paths.traj) in result.message
    assert 2 < result.steps_done < 60
    for frames in (read(result.paths.traj, ":"), read(result.paths.extxyz, ":")):
        assert len(frames) == result.steps_done  # steps 0 .. last good one
        assert all(closest_pair(frame, 0.5) is None for frame in frames)


# --------------------------------------------------------------------------- structures and bad input


def test_structure_sources(tmp_path):
    assert {"aspirin", "ethanol"} <= set(named_structures())
    aspirin = load_structure("aspirin")
    assert aspirin.get_chemical_formula() == "C9H8O4" and aspirin.info["name"] == "aspirin"
    ethanol = load_structure("CCO", seed=3)
    assert ethanol.get_chemical_formula() == "C2H6O"
    np.testing.assert_array_equal(ethanol.positions, atoms_from_smiles("CCO", seed=3).positions)  # reproducible
    assert closest_pair(ethanol, 0.9) is None
    path = tmp_path / "water.xyz"
    path.write_text("3\nwater\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n")
    assert load_structure(str(path)).get_chemical_formula() == "H2O"


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ("C1CC", ValueError, "not a file, a bundled molecule"),  # unclosed ring: invalid SMILES
        ("smiles:C(C", ValueError, "invalid SMILES"),
        ("missing/structure.xyz", FileNotFoundError, "not found"),
        ("name:unobtainium", ValueError, "no bundled molecule"),
    ],
)
def test_bad_structure_specs(spec, error, match):
    with pytest.raises(error, match=match):
        load_structure(spec)


def test_bad_input_fails_before_any_step(model, tmp_path):
    garbage = tmp_path / "garbage.xyz"
    garbage.write_text("this is not\nan xyz file\n")
    out = tmp_path / "out"
    cases = [
        (dict(structure=str(garbage)), "cannot read structure file"),
        (dict(structure="CCCl"), r"Cl \(Z=17\)"),  # the model covers Z < 10 only
        (dict(structure="ethanol", ensemble="npt"), "NPT needs a 3D-periodic"),
        (dict(structure="ethanol", timestep=-1.0), "timestep"),
    ]
    for overrides, match in cases:
        with pytest.raises(ValueError, match=match):
            run_md(quiet(out, model=model, steps=5, **overrides))
    nan = load_structure("ethanol")
    nan.positions[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        run_md(quiet(out, model=model, steps=5), atoms=nan)
    no_cell = load_structure("ethanol")
    no_cell.pbc = True
    with pytest.raises(ValueError, match="cell"):
        run_md(quiet(out, model=model, steps=5), atoms=no_cell)
    assert not out.exists()  # nothing was started


# --------------------------------------------------------------------------- command line


def test_cli_runs_md_and_checks_nve(model, tmp_path, capsys):
    path = save_model(model, tmp_path / "model.pt")
    common = ["ethanol", "--model", str(path), "--output-dir", str(tmp_path), "--no-progress", "--no-plots"]
    assert md_main([*common, "--steps", "10", "--ensemble", "langevin"]) == 0
    assert "ethanol_langevin.traj" in capsys.readouterr().out
    code = md_main(
        [*common, "--steps", "40", "--timestep", "0.25", "--log-interval", "1", "--check-nve", "--max-drift", "1.0"]
    )
    out = capsys.readouterr().out
    assert code == 0 and "NVE drift" in out and "eV/atom/ps" in out
    assert visnet_main(["md", "--list-molecules"]) == 0  # `visnet md` dispatches here
    assert "aspirin" in capsys.readouterr().out


def test_cli_reports_bad_input(model, tmp_path, capsys):
    path = save_model(model, tmp_path / "model.pt")
    assert visnet_main(["md", "smiles:C(C", "--model", str(path), "--output-dir", str(tmp_path)]) == 2
    assert "invalid SMILES" in capsys.readouterr().err
    assert visnet_main(["md", "ethanol", "--model", str(tmp_path / "nope.pt"), "--output-dir", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options",
    [["--steps", "0"], ["--steps", "0", "--equilibration-steps", "10"], ["--steps", "5", "--log-interval", "10"]],
    ids=["steps-0", "equilibration-only", "one-sample"],
)
def test_one_sample_summary_has_no_nan(cheap_model, tmp_path, capsys, options):
    """Red-team round 3, item 13: one temperature sample (no production steps, or fewer than one
    log interval) is reported as that temperature, with no "± nan" and no "nan steps/s"."""
    path = save_model(cheap_model, tmp_path / "model.pt")
    common = ["ethanol", "--model", str(path), "--output-dir", str(tmp_path), "--no-progress"]
    assert md_main([*common, *options]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out.lower() and re.search(r"temperature \d+\.\d K \(one sample", out), out
    assert len(read(tmp_path / "ethanol_langevin.traj", ":")) == 1


def test_temperature_stats_of_one_and_two_samples():
    one = temperature_stats(np.array([0.0]), np.array([237.2]))
    assert one.error is None and one.mean == 237.2 and one.samples == 1
    assert one.report(300.0, 24) == "temperature 237.2 K (one sample: no mean or error; run more steps for statistics)"
    two = temperature_stats(np.array([0.0, 0.005]), np.array([290.0, 310.0]))
    assert two.error == pytest.approx(10.0 / np.sqrt(2)) and "nan" not in two.report(
        300.0, 24
    )  # std·sqrt(2τ/n), τ = 1/2


def test_check_nve_refuses_too_few_samples_before_running(cheap_model, tmp_path, capsys):
    """--check-nve with fewer than 3 logged energies used to print no drift and pass --max-drift;
    --max-drift without --check-nve was ignored. Both are refused up front (exit 2, no files)."""
    path = save_model(cheap_model, tmp_path / "model.pt")
    common = ["ethanol", "--model", str(path), "--output-dir", str(tmp_path / "out"), "--no-progress"]
    assert visnet_main(["md", *common, "--check-nve", "--steps", "10", "--max-drift", "0.1"]) == 2
    assert "--check-nve needs at least 3 energy samples: --steps 10 with --log-interval 10 records 2" in (
        capsys.readouterr().err
    )
    assert visnet_main(["md", *common, "--steps", "10", "--max-drift", "0.1"]) == 2
    assert "--max-drift needs --check-nve" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- output lock

HOLD_LOCK = """
import sys
from pathlib import Path
from visnet.dynamics.outputs import OutputLock, OutputPaths
lock = OutputLock(OutputPaths(Path(sys.argv[1]), sys.argv[2])).__enter__()
print("held", flush=True)
sys.stdin.read()
"""


def test_a_second_run_on_the_same_output_name_is_refused(cheap_model, tmp_path, capsys):
    """Red-team round 3, item 5: two `visnet md` with the same --output-dir and --name used to
    interleave their frames. While another process holds the name, a run is refused in one line
    naming the holder, before any file is touched; a lock left by a killed run is taken over with a
    warning; runs one after the other overwrite as before and leave no lock file."""
    path = save_model(cheap_model, tmp_path / "model.pt")
    out = tmp_path / "out"
    out.mkdir()
    traj = out / "run_langevin.traj"
    traj.write_bytes(b"frames of the running run")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out), "run_langevin"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout.readline() == b"held\n"
        args = ["ethanol", "--model", str(path), "--output-dir", str(out), "--name", "run", "--steps", "2"]
        assert visnet_main(["md", *args, "--no-progress", "--no-plots"]) == 2
        err = capsys.readouterr().err
        assert f"run_langevin.* is being written by another visnet md run (pid {holder.pid} on " in err, err
        assert traj.read_bytes() == b"frames of the running run"
        assert md_main([*args, "--no-progress", "--no-plots", "--ensemble", "bussi"]) == 0  # another name
    finally:
        holder.kill()  # SIGKILL: the lock file stays behind, the kernel drops the lock
        holder.wait()
    config = quiet(out, structure="ethanol", model=cheap_model, name="run", steps=2)
    with pytest.warns(UserWarning, match=rf"left by an earlier run that did not end cleanly \(pid {holder.pid} "):
        assert run_md(config).completed
    assert len(read(traj, ":")) == 1 and not (out / "run_langevin.lock").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run_md(config).completed  # again: overwrites, no warning
    assert sorted(p.name for p in out.glob("*.lock")) == []


@pytest.mark.skipif(not (PRETRAINED_DIR / "default.pt").is_file(), reason="bundled default model not built yet")
def test_default_model_short_nvt_on_aspirin(tmp_path):
    result = run_md(quiet(tmp_path, structure="aspirin", ensemble="langevin", temperature=300.0, steps=50))
    assert result.completed, result.message


# --------------------------------------------------------------------------- committee uncertainty


@pytest.fixture(scope="module")
def committee() -> list[ViSNet]:
    """Three differently seeded small models: they agree on nothing in particular, as models do far
    from their training data."""
    return [random_model(hidden=16, layers=1, bias_scale=0.05, num_heads=2, num_rbf=8, seed=s) for s in (1, 2, 3)]


def _committee_run(tmp_path, committee, **kwargs):
    config = quiet(
        tmp_path,
        structure="ethanol",
        model=committee,
        ensemble="langevin",
        temperature=500.0,
        steps=60,
        log_interval=3,
        traj_interval=30,
        min_distance=0.1,
        **kwargs,
    )
    return run_md(config)


def test_committee_harvests_exactly_the_frames_above_the_threshold(committee, tmp_path):
    """A first run logs the max force std of every checked frame; a threshold at its median flags
    about half of them in an identical second run, and the harvested file holds exactly those frames
    with the committee mean energy/forces and their std."""
    logged = _committee_run(tmp_path / "log", committee)
    time, values = logged.force_std
    assert len(values) == 21 and (values > 0).all()  # steps 0, 3, ..., 60
    assert not logged.paths.uncertain.exists()  # no threshold: nothing harvested
    table = np.loadtxt(logged.paths.uncertainty_log)
    np.testing.assert_allclose(table[:, 3], values, rtol=1e-5)
    threshold = float(np.median(values))
    expected = [int(step) for step, v in zip(table[:, 0], values, strict=True) if v > threshold]
    result = _committee_run(tmp_path / "harvest", committee, max_force_std=threshold, plots=True)
    assert result.completed and 5 <= len(expected) <= 15
    assert result.uncertain_steps == expected
    frames = read(result.paths.uncertain, ":")
    assert [f.info["step"] for f in frames] == expected
    calc = ViSNetCalculator(committee=committee)
    for frame in frames:
        assert frame.info["max_force_std"] > threshold
        atoms = frame.copy()
        atoms.calc = calc
        np.testing.assert_allclose(frame.get_potential_energy(), atoms.get_potential_energy(), atol=1e-5)
        np.testing.assert_allclose(frame.get_forces(), atoms.get_forces(), atol=1e-5)
        np.testing.assert_allclose(frame.arrays["forces_std"], calc.results["forces_std"], atol=1e-5)
        assert frame.info["energy_std"] == pytest.approx(calc.results["energy_std"], abs=1e-5)
    assert result.plots[0].stat().st_size > 1000  # energies with the force-std panel


def test_committee_stop_at_first_uncertain_frame(committee, tmp_path):
    first = _committee_run(tmp_path / "log", committee)
    threshold = float(np.median(first.force_std[1]))
    result = _committee_run(tmp_path / "stop", committee, max_force_std=threshold, stop_on_uncertain=True)
    assert result.stopped_uncertain and not result.completed and "max force std" in result.message
    frames = read(result.paths.uncertain, ":")
    assert len(frames) == 1 and result.uncertain_steps == [frames[0].info["step"]] == [result.steps_done]


def test_committee_cli_takes_a_run_folder(committee, tmp_path, capsys):
    folder = tmp_path / "ens"
    for k, member in enumerate(committee[:2]):
        save_model(member, folder / f"member_{k}" / "model.pt")
    common = ["ethanol", "--model", str(folder), "--output-dir", str(tmp_path), "--no-progress", "--no-plots"]
    args = [*common, "--steps", "12", "--log-interval", "3", "--max-force-std", "1e-9", "--stop-on-uncertain"]
    assert md_main(args) == 0
    out = capsys.readouterr().out
    assert "uncertain frames: 1" in out and "stopped at step 0" in out
    single = save_model(committee[0], tmp_path / "one.pt")
    assert (
        visnet_main(["md", "ethanol", "--model", str(single), "--max-force-std", "0.1", "--output-dir", str(tmp_path)])
        == 2
    )
    assert "committee" in capsys.readouterr().err


def test_equilibration_is_not_recorded(cheap_model, tmp_path):
    result = run_md(
        quiet(
            tmp_path,
            structure="ethanol",
            model=cheap_model,
            ensemble="bussi",
            equilibration_steps=20,
            steps=30,
            log_interval=5,
            traj_interval=10,
            min_distance=0.1,
        )
    )
    assert result.completed and result.steps_done == 30 and result.equilibration_steps == 20
    np.testing.assert_allclose(result.thermo["time"], np.arange(20, 51, 5) * 0.5e-3)  # ps, production only
    assert len(read(result.paths.traj, ":")) == 4  # steps 20, 30, 40, 50
    stats = result.temperature
    assert stats.samples == 7 and stats.mean == pytest.approx(result.thermo["temperature"].mean())
    assert result.dof == 3 * 9 - 3  # FixCom


def test_production_intervals_count_from_its_first_step(cheap_model, tmp_path):
    """An equilibration of 4 steps with 10-step intervals: production is sampled at its steps 0,
    10, 20 (global 4, 14, 24), not at the global multiples of 10 (no first frame, uneven offsets)."""
    config = quiet(tmp_path, structure="ethanol", model=cheap_model, equilibration_steps=4, steps=20, min_distance=0.1)
    result = run_md(config)
    assert result.completed and result.temperature.samples == 3
    np.testing.assert_allclose(result.thermo["time"], np.array([4, 14, 24]) * 0.5e-3)
    assert len(read(result.paths.traj, ":")) == 3


# --------------------------------------------------------------------------- thermostats, long run (slow)


SEEDS = (0, 1, 2)


@pytest.mark.slow
@pytest.mark.skipif(not (PRETRAINED_DIR / "default.pt").is_file(), reason="bundled default model not built yet")
@pytest.mark.parametrize("ensemble", ["langevin", "bussi", "baoab"])
def test_thermostats_hold_the_target_within_statistical_error(tmp_path, ensemble):
    """Ethanol (24 degrees of freedom with FixCom) with the bundled model at 300 K, 1 fs steps,
    0.1 ps thermostat time: three independent runs (seeds 0, 1, 2), each 0.5 ps of equilibration
    then 4 ps of production. Pooled over the runs, the mean temperature is within 3 standard errors
    (each run's from its integrated autocorrelation time) of the target, that error is below 5 % of
    it (the test can see a thermostat running hot, as ASE's Langevin with fixcm=True did by 45 %,
    or BAOAB's full-step velocities reading ~3 % cold at 1 fs), and the spread of the instantaneous
    temperature is the canonical T·sqrt(2/24) within 25 %. One 4 ps run is not enough: seed 0 alone
    reads 278 ± 6 K under BAOAB (seeds 1 and 2: 304 ± 16, 300 ± 11); its error, from Sokal's window
    over 1,000 correlated samples, is itself uncertain."""
    runs = []
    for seed in SEEDS:
        config = quiet(
            tmp_path / str(seed),
            structure="ethanol",
            ensemble=ensemble,
            temperature=300.0,
            timestep=1.0,
            friction=10.0,
            equilibration_steps=500,
            steps=4000,
            log_interval=4,
            traj_interval=4000,
            seed=seed,
        )
        result = run_md(config)
        assert result.completed, result.message
        assert result.dof == 24 and result.temperature.samples == 1001
        runs.append(result.temperature)
    reports = "; ".join(run.report(300.0, 24) for run in runs)
    mean = np.mean([run.mean for run in runs])
    error = np.sqrt(np.sum([run.error**2 for run in runs])) / len(runs)
    assert abs(mean - 300.0) < 3 * error, f"pooled {mean:.1f} ± {error:.1f} K: {reports}"
    assert error < 0.05 * 300.0, reports
    spread = np.mean([run.std for run in runs])
    assert spread == pytest.approx(300.0 * np.sqrt(2 / 24), rel=0.25), reports


def test_temperature_error_accounts_for_correlation():
    """AR(1) series x_t = φ x_{t-1} + noise have τ_int = (1 + φ) / (2 (1 − φ)) samples; the error of
    the mean is std·sqrt(2 τ_int / n), not std/sqrt(n)."""
    rng = np.random.default_rng(0)
    phi, n = 0.9, 20_000
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + rng.standard_normal()
    assert integrated_autocorrelation_time(x) == pytest.approx((1 + phi) / (2 * (1 - phi)), rel=0.15)
    assert integrated_autocorrelation_time(rng.standard_normal(n)) == pytest.approx(0.5, abs=0.05)
    time = np.arange(n) * 0.01
    stats = temperature_stats(time, 300.0 + x)
    assert stats.error == pytest.approx(x.std() * np.sqrt(2 * 9.5 / n), rel=0.15)
    assert stats.correlation_time == pytest.approx(9.5 * 0.01, rel=0.15) and stats.duration == pytest.approx(199.99)
    assert "± " in stats.report(300.0, 24) and "canonical" in stats.report(300.0, 24)
