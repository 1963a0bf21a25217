"""Bad-input matrix of the MD and engine entry points (red-team round 3, items 5, 9, 10, 13, 14).

Every case either raises one clear line naming the culprit (a ValueError or a ``VisnetError``;
exit code 2 and no traceback from a CLI) or returns an answer without NaN. Devices: each entry
point that takes a device (the calculator, ``visnet.predict``, ``load_model``, the MD runner, the
OpenMM potential, the TorchSim model, and the ``md``, ``predict`` and ``evaluate`` commands)
refuses CUDA on a CPU-only torch, a GPU index past the last one and strings torch does not know,
through ``visnet.devices.resolve_device``. Which torch build is simulated by patching ``torch.version``
and ``torch.cuda.device_count``, so the cases mean the same on a CPU and a GPU machine. Cheap: one
module-scoped small model, MD runs of at most a few steps.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError
from helpers import small_model, water_molecule

from visnet import ViSNet, ViSNetCalculator, load_model, predict, save_model
from visnet.cli import main as visnet_main
from visnet.dynamics import MDConfig, run_md
from visnet.dynamics.outputs import OutputInUseError, OutputLock, OutputPaths
from visnet.inference.committee import EnergyReferenceWarning
from visnet.integrations.engine_model import load_engine_model


@pytest.fixture(scope="module")
def model() -> ViSNet:
    return small_model().eval()


@pytest.fixture(scope="module")
def model_file(model: ViSNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model(model, tmp_path_factory.mktemp("model") / "model.pt")


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``visnet <argv>`` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = visnet_main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, fragment: str) -> None:
    assert code == 2, err
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# --------------------------------------------------------------------------- devices (item 14)

CPU_ONLY = "this torch has no CUDA device: torch"
NO_SUCH_GPU = "this machine has 2 CUDA device(s): cuda:0..cuda:1"
UNKNOWN = "device must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto', got 'gpu'"


@pytest.fixture
def torch_build(monkeypatch: pytest.MonkeyPatch) -> Callable[[int | None], None]:
    """Simulate a torch build: None = built without CUDA, n = CUDA with n visible GPUs."""

    def simulate(gpus: int | None) -> None:
        monkeypatch.setattr(torch.version, "cuda", None if gpus is None else "12.4")
        monkeypatch.setattr(torch.version, "hip", None)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus or 0)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: bool(gpus))

    return simulate


DEVICE_CASES = [(None, "cuda", CPU_ONLY), (2, "cuda:7", NO_SUCH_GPU), (2, "gpu", UNKNOWN), (None, "meta", "'meta'")]
DEVICE_IDS = ["cuda-on-cpu-torch", "cuda-index-past-last", "gpu-string", "meta"]


def openmm_potential(model: ViSNet, device: str) -> None:
    openmmml = pytest.importorskip("openmmml")
    openmmml.MLPotential("visnet", model=model, device=device)


def openmm_create_system(model: ViSNet, device: str) -> None:
    openmmml = pytest.importorskip("openmmml")
    from openmm import app

    topology = app.Topology()
    topology.addAtom("O", app.Element.getBySymbol("O"), topology.addResidue("W", topology.addChain()))
    openmmml.MLPotential("visnet", model=model).createSystem(topology, device=device)


def torchsim_model(model: ViSNet, device: str) -> None:
    pytest.importorskip("torch_sim")
    from visnet.integrations.torchsim import ViSNetModel

    ViSNetModel(model, device=device)


def md_runner(model: ViSNet, device: str, tmp_path: Path) -> None:
    run_md(MDConfig(structure="ethanol", model=model, device=device, steps=1, output_dir=tmp_path, progress=False))


API_ENTRY_POINTS: dict[str, Callable[..., object]] = {
    "calculator": lambda model, device, _: ViSNetCalculator(model, device=device),
    "committee": lambda model, device, _: ViSNetCalculator(committee=[model, model], device=device),
    "predict": lambda model, device, _: predict(["CCO"], model=model, device=device),
    "engine-model": lambda model, device, _: load_engine_model(model, device),
    "openmm-potential": lambda model, device, _: openmm_potential(model, device),
    "openmm-createSystem": lambda model, device, _: openmm_create_system(model, device),
    "torchsim": lambda model, device, _: torchsim_model(model, device),
    "md-runner": md_runner,
}


@pytest.mark.parametrize("entry", list(API_ENTRY_POINTS))
@pytest.mark.parametrize(("gpus", "device", "message"), DEVICE_CASES, ids=DEVICE_IDS)
def test_api_refuses_a_device_this_machine_lacks(model, tmp_path, torch_build, entry, gpus, device, message):
    torch_build(gpus)
    with pytest.raises(ValueError, match=re.escape(message)):
        API_ENTRY_POINTS[entry](model, device, tmp_path)
    assert not list(tmp_path.iterdir())  # refused before any output


@pytest.mark.parametrize(("gpus", "device", "message"), DEVICE_CASES, ids=DEVICE_IDS)
def test_load_model_refuses_a_device_this_machine_lacks(model_file, torch_build, gpus, device, message):
    torch_build(gpus)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_model(model_file, device=device)


def cli_commands(model_file: Path, out: Path) -> dict[str, list[str]]:
    return {
        "md": ["md", "ethanol", "--model", str(model_file), "--steps", "1", "--output-dir", str(out), "--no-progress"],
        "predict": ["predict", "--smiles", "CCO", "--model", str(model_file)],
        "evaluate": ["evaluate", "--model", str(model_file), "--data", "missing.npz", "--out", str(out / "eval")],
    }


@pytest.mark.parametrize("command", ["md", "predict", "evaluate"])
@pytest.mark.parametrize(("gpus", "device", "message"), DEVICE_CASES, ids=DEVICE_IDS)
def test_cli_refuses_a_device_this_machine_lacks_in_one_line(
    model_file, tmp_path, torch_build, command, gpus, device, message
):
    torch_build(gpus)
    code, _, err = run_cli([*cli_commands(model_file, tmp_path)[command], "--device", device])
    assert_one_line_error(code, err, message)


def test_device_auto_and_cpu_still_resolve(model, torch_build):
    torch_build(None)
    assert ViSNetCalculator(model, device="auto").device == torch.device("cpu")
    assert ViSNetCalculator(model, device=torch.device("cpu")).device == torch.device("cpu")


# --------------------------------------------------------------------------- visnet md (items 5, 13)


def md_args(model_file: Path, out: Path, *options: str) -> list[str]:
    """``visnet md`` of ethanol with the random model (its forces heat a run fast: short steps, a lax guard)."""
    model = ["--model", str(model_file), "--temperature", "100", "--timestep", "0.1", "--max-temperature", "1e5"]
    return ["md", "ethanol", *model, "--output-dir", str(out), "--no-progress", *options]


@pytest.mark.parametrize(
    "options",
    [
        ("--steps", "0"),
        ("--steps", "0", "--equilibration-steps", "4"),
        ("--steps", "3", "--equilibration-steps", "20", "--log-interval", "10"),
        ("--steps", "2", "--log-interval", "5", "--traj-interval", "5"),
    ],
    ids=["steps-0", "equilibration-only", "equilibration-longer-than-steps", "one-frame"],
)
def test_md_with_one_sample_reports_no_nan(model_file, tmp_path, options):
    code, out, err = run_cli(md_args(model_file, tmp_path, *options, "--no-plots"))
    assert code == 0, err
    assert "nan" not in out.lower() and "(one sample: no mean or error" in out, out


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--check-nve", "--steps", "5"), "--check-nve needs at least 3 energy samples: --steps 5"),
        (("--check-nve", "--steps", "0", "--log-interval", "1"), "records 1; give --steps >= 2"),
        (
            (
                "--max-drift",
                "0.1",
            ),
            "--max-drift needs --check-nve",
        ),
        (
            (
                "--steps",
                "-1",
            ),
            "steps must be >= 0",
        ),
        (
            (
                "--log-interval",
                "0",
            ),
            "intervals >= 1",
        ),
    ],
    ids=["check-nve-one-sample", "check-nve-steps-0", "max-drift-alone", "negative-steps", "log-interval-0"],
)
def test_md_refuses_options_that_cannot_work(model_file, tmp_path, options, message):
    code, _, err = run_cli(md_args(model_file, tmp_path / "out", *options))
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "out").exists()


@pytest.fixture
def held_output(tmp_path: Path) -> Iterator[OutputPaths]:
    """The output name "ethanol_langevin" in tmp_path/out, locked as a running run holds it."""
    paths = OutputPaths(tmp_path / "out", "ethanol_langevin")
    with OutputLock(paths):
        paths.traj.write_bytes(b"the running run's frames")
        yield paths


def test_md_refuses_an_output_name_in_use(model, model_file, held_output):
    out = held_output.directory
    code, _, err = run_cli(md_args(model_file, out, "--steps", "1"))
    assert_one_line_error(code, err, "ethanol_langevin.* is being written by another visnet md run (pid ")
    with pytest.raises(OutputInUseError, match="give another --name or --output-dir"):
        run_md(MDConfig(structure="ethanol", model=model, steps=1, output_dir=out, progress=False))
    assert held_output.traj.read_bytes() == b"the running run's frames"
    code, _, err = run_cli(md_args(model_file, out, "--steps", "1", "--name", "other", "--no-plots"))
    assert code == 0, err  # another name in the same folder runs


# --------------------------------------------------------------------------- calculator results (items 9, 10)


def test_stress_of_non_3d_periodic_systems_stays_unavailable(model):
    """Stress now comes with the forces for 3D-periodic systems; molecules, slabs and wires still
    have none, asked for before or after the forces, singly or in a batch."""
    cell = np.diag([6.0, 6.0, 6.0])
    for pbc in (False, [True, True, False], [True, False, False]):
        atoms = water_molecule(cell=cell, pbc=pbc)
        atoms.calc = ViSNetCalculator(model, device="cpu")
        atoms.get_forces()
        with pytest.raises(PropertyNotImplementedError, match="3D-periodic"):
            atoms.get_stress()
        with pytest.raises(PropertyNotImplementedError, match="3D-periodic"):
            atoms.calc.calculate_batch([atoms], properties=["energy", "stress"])
    box = water_molecule(cell=cell, pbc=True)
    box.calc = ViSNetCalculator(model, device="cpu")
    box.get_forces()
    assert np.isfinite(box.get_stress()).all() and box.calc.num_evaluations == 1


def test_committee_mixing_energy_references_warns_once(model):
    shifted = small_model().eval()
    with torch.no_grad():
        shifted.prior_model.atomref.weight += 25.0  # eV per atom: another energy zero, same forces
    atoms = water_molecule()
    atoms.calc = ViSNetCalculator(committee=[model, shifted], device="cpu")
    with pytest.warns(EnergyReferenceWarning, match=r"differ by 75 eV \(25 eV/atom\)"):
        atoms.get_potential_energy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        atoms.positions[0, 0] += 0.1
        atoms.get_potential_energy()
    assert np.isfinite(atoms.calc.results["forces_std"]).all()


def test_committee_of_one_model_twice_does_not_warn(model):
    atoms: Atoms = water_molecule()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        atoms.calc = ViSNetCalculator(committee=[model, model], device="cpu")
        atoms.get_forces()
    assert atoms.calc.results["energy_std"] == 0.0
