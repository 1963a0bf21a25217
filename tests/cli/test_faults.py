"""Safety and faults (issue 7): checkpoints never run pickled code, the package never evaluates
strings or unpickles, a training run killed with SIGKILL resumes and finishes, files are written
atomically (a crash mid-write leaves the old file and no temporary file), a killed MD run leaves
readable trajectories, and non-finite model outputs raise instead of being returned.

Subprocess tests run ``python -m visnet.cli`` with one thread (the kill-and-resume training run takes ~10 s).
"""

from __future__ import annotations

import ast
import csv
import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import read
from conftest import REPO, shared_file
from helpers import PickledCode, lightning_payload, small_model, water_molecule

from visnet import ViSNet, load_model, save_model
from visnet.cli import main as visnet_main
from visnet.data import load_atoms_data
from visnet.data.splits import load_or_make_splits, read_splits
from visnet.dynamics import MDConfig, load_structure, run_md
from visnet.files.atomic import atomic_write_text
from visnet.inference.calculator import NonFiniteResultError, ViSNetCalculator
from visnet.prediction.predict import predict
from visnet.training.evaluate import _write_json

PACKAGE = REPO / "visnet"
TINY = str(REPO / "configs" / "tiny.yaml")
ETHANOL = ("rmd17", "rmd17_ethanol_train1000.npz")
WAIT_SECONDS = 300  # for a subprocess to reach a checkpoint / trajectory frames on a contended machine


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen, what: str) -> None:
    """Poll until ``condition()`` (fail if the process exits first or WAIT_SECONDS pass)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert process.poll() is None, f"the process exited ({process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {WAIT_SECONDS} s"
        time.sleep(0.05)


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def _temporary_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp" or ".tmp." in p.name]


# --------------------------------------------------------------------------- safety


def _calls(tree: ast.AST) -> Iterator[tuple[str, ast.Call]]:
    """(dotted name of the callee, call) for every call in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield ast.unparse(node.func), node


def _unsafe(name: str, call: ast.Call) -> str | None:
    keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
    if name in ("eval", "exec", "compile", "__import__") or name.startswith(("pickle.", "marshal.", "dill.")):
        return name
    if name.endswith("torch.load") and keywords.get("weights_only") != "True":
        return "torch.load without weights_only=True"
    if name in ("np.load", "numpy.load") and keywords.get("allow_pickle", "False") != "False":
        return "np.load(allow_pickle=True)"
    if name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
        return name
    return None


def test_package_never_evaluates_strings_or_unpickles() -> None:
    """No eval/exec/pickle in ``visnet/``; every torch.load says weights_only=True, np.load keeps
    allow_pickle off; config files are parsed (jsonargparse, yaml.safe_load), not executed."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for name, call in _calls(ast.parse(path.read_text(), filename=str(path))):
            problem = _unsafe(name, call)
            if problem:
                found.append(f"{path.relative_to(REPO)}:{call.lineno}: {problem}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("given", ["path", "last"])
def test_fit_refuses_a_resume_checkpoint_carrying_code(tmp_path: Path, monkeypatch, capsys, given: str) -> None:
    """``visnet fit --ckpt_path evil.ckpt`` (or ``last`` finding it in the run folder): refused, even
    when the environment tells torch to unpickle by default (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD);
    the code never runs."""
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "run"
    evil = run_dir / "checkpoints" / ("last.ckpt" if given == "last" else "evil.ckpt")
    evil.parent.mkdir(parents=True)
    model = ViSNet(hidden_channels=16, num_layers=2, num_rbf=8, num_heads=2, cutoff=4.0, max_z=10)
    torch.save({**lightning_payload(model), "callbacks": PickledCode(marker)}, evil)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    args = [
        "fit",
        "--config",
        TINY,
        "--data.path",
        str(shared_file(*ETHANOL)),
        "--trainer.default_root_dir",
        str(run_dir),
        "--trainer.enable_progress_bar",
        "false",
        "--ckpt_path",
        "last" if given == "last" else str(evil),
    ]
    assert visnet_main(args) == 2
    assert "refused for safety" in capsys.readouterr().err
    assert not marker.exists()


# --------------------------------------------------------------------------- training killed and resumed


def _fit_command(run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "visnet.cli",
        "fit",
        "--config",
        TINY,
        "--data.path",
        str(shared_file(*ETHANOL)),
        "--trainer.default_root_dir",
        str(run_dir),
        "--trainer.max_epochs",
        "6",
        "--trainer.enable_progress_bar",
        "false",
        *extra,
    ]


def test_training_killed_after_a_checkpoint_resumes_and_finishes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(_fit_command(run_dir), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(last.is_file, process, "last.ckpt")
    _kill(process)
    killed_at = torch.load(last, weights_only=True)["global_step"]
    splits = (run_dir / "splits.npz").read_bytes()
    assert 0 < killed_at < 24 and not (run_dir / "model.pt").exists()
    resumed = subprocess.run(_fit_command(run_dir, "--ckpt_path", "last"), env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(last, weights_only=True)["global_step"] == 24  # 6 epochs of 4 batches
    assert (run_dir / "splits.npz").read_bytes() == splits  # the same structures after the restart
    with open(run_dir / "logs" / "version_1" / "metrics.csv") as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle) if row.get("train_loss_step")]
    assert steps[0] == killed_at  # continued from the checkpoint, not restarted
    assert load_model(run_dir / "model.pt").metadata["units"]["energy"] == "kcal/mol"
    assert not _temporary_files(run_dir)


# --------------------------------------------------------------------------- atomic writes


def _disk_full(*args, **kwargs) -> None:
    raise OSError(28, "No space left on device")


def _partial_then_crash(handle_position: int = 1) -> Callable:
    """A stand-in writer: writes a few bytes to the file it was given, then fails like a full disk."""

    def writer(*args, **kwargs) -> None:
        args[handle_position].write(b"PK\x03\x04 partial")
        _disk_full()

    return writer


def _model_writes(tmp_path: Path, monkeypatch) -> tuple[Path, Callable[[], object], Callable[[], object]]:
    path = save_model(small_model(seed=0), tmp_path / "model.pt")
    monkeypatch.setattr(torch, "save", _partial_then_crash())
    new = small_model(seed=1)
    return path, lambda: save_model(new, path), lambda: load_model(path).representation_model.embedding.weight.sum()


def _splits_writes(tmp_path: Path, monkeypatch) -> tuple[Path, Callable[[], object], Callable[[], object]]:
    load_or_make_splits(tmp_path, 100, 80, 10, 10, seed=0)
    monkeypatch.setattr(np, "savez", _partial_then_crash(0))
    write_new = lambda: load_or_make_splits(tmp_path, 100, 70, 20, 10, seed=1, replace_mismatched=True)  # noqa: E731
    return tmp_path / "splits.npz", write_new, lambda: read_splits(tmp_path / "splits.npz")["train"].tolist()


def _json_writes(tmp_path: Path, monkeypatch) -> tuple[Path, Callable[[], object], Callable[[], object]]:
    path = tmp_path / "metrics.json"
    _write_json(path, {"mae": 1.0})
    monkeypatch.setattr(os, "fsync", _disk_full)  # after the text is written, before the rename
    return path, lambda: _write_json(path, {"mae": 2.0}), path.read_text


WRITERS = {"model.pt (save_model)": _model_writes, "splits.npz": _splits_writes, "metrics.json": _json_writes}


@pytest.mark.filterwarnings("ignore:.*was made for other settings")  # the new splits replace the old on purpose
@pytest.mark.parametrize("writer", list(WRITERS))
def test_crash_mid_write_leaves_the_old_file(tmp_path: Path, monkeypatch, writer: str) -> None:
    path, write_new, read_back = WRITERS[writer](tmp_path, monkeypatch)
    before = read_back()
    with pytest.raises(OSError, match="No space left"):
        write_new()
    assert read_back() == before
    assert not _temporary_files(tmp_path)


TORCH_DISK_FULL = (
    "[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file data/0: file write failed"
)


def _torch_disk_full(obj: object, handle, *args, **kwargs) -> None:
    """``torch.save`` on a full disk: a few bytes, then torch's RuntimeError (not an OSError)."""
    handle.write(b"PK\x03\x04 partial")
    raise RuntimeError(TORCH_DISK_FULL)


def test_full_disk_writing_a_model_says_no_space_and_names_the_file(tmp_path: Path, monkeypatch, capsys) -> None:
    """torch's ``RuntimeError: [enforce fail at inline_container.cc...]`` becomes an OSError (ENOSPC)
    naming the file; the old file stays, no temporary file is left, and ``visnet`` exits with 2."""
    path = save_model(small_model(seed=0), tmp_path / "model.pt")
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _torch_disk_full)
    with pytest.raises(OSError, match=f"No space left on device writing {path}") as info:
        save_model(small_model(seed=1), path)
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert not _temporary_files(tmp_path)

    def export(argv: list[str]) -> int:
        save_model(small_model(seed=1), path)
        return 0

    monkeypatch.setattr("visnet.cli.evaluate.main", export)
    assert visnet_main(["evaluate"]) == 2
    assert f"visnet: error: No space left on device writing {path}" in capsys.readouterr().err


def test_a_failed_plain_write_names_the_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(os, "fsync", _disk_full)
    with pytest.raises(OSError, match=f"No space left on device writing {tmp_path / 'a.txt'}"):
        atomic_write_text(tmp_path / "a.txt", "text")


def test_atomically_written_files_get_normal_permissions(tmp_path: Path) -> None:
    """The temporary file (mkstemp: mode 0600) must not leave exported models unreadable to others."""
    umask = os.umask(0)
    os.umask(umask)
    model = save_model(small_model(), tmp_path / "model.pt")
    load_or_make_splits(tmp_path, 10, 8, 1, 1)
    for path in (model, tmp_path / "splits.npz"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def test_processed_data_cache_survives_a_failed_write(tmp_path: Path, monkeypatch) -> None:
    """A cache entry that cannot be written costs a warning, not the run, and leaves no partial entry."""
    source = shared_file("rmd17", "rmd17_ethanol_train1000.extxyz")
    cache = tmp_path / "cache"
    with monkeypatch.context() as patch:
        patch.setattr(np, "savez", _partial_then_crash(0))
        with pytest.warns(UserWarning, match="could not write the data cache entry"):
            first = load_atoms_data(source, cache_dir=cache, index=":20")
    assert not list(cache.iterdir()) and len(first) == 20
    again = load_atoms_data(source, cache_dir=cache, index=":20")  # writes the entry now
    assert [p.suffix for p in cache.iterdir()] == [".npz"]
    np.testing.assert_array_equal(again.pos, first.pos)
    np.testing.assert_array_equal(load_atoms_data(source, cache_dir=cache, index=":20").y, first.y)


# --------------------------------------------------------------------------- MD killed


def test_md_killed_leaves_readable_trajectories(tmp_path: Path) -> None:
    model_path = save_model(small_model(), tmp_path / "model.pt")
    command = [
        sys.executable,
        "-m",
        "visnet.cli",
        "md",
        "ethanol",
        "--model",
        str(model_path),
        "--ensemble",
        "nve",
        "--steps",
        "1000000",
        "--traj-interval",
        "1",
        "--log-interval",
        "1",
        "--output-dir",
        str(tmp_path),
        "--no-progress",
        "--no-plots",
        "--max-temperature",
        "1e7",
    ]
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    traj = tmp_path / "ethanol_nve.traj"
    _wait_for(lambda: traj.is_file() and traj.stat().st_size > 30_000, process, "trajectory frames")
    _kill(process)
    frames = read(traj, ":")
    extxyz = read(tmp_path / "ethanol_nve.extxyz", ":")
    assert len(frames) >= 10 and abs(len(extxyz) - len(frames)) <= 1  # killed between the two writers at most
    for a, b in zip(frames, extxyz):
        np.testing.assert_allclose(b.positions, a.positions, atol=1e-6)  # extxyz keeps 8 decimals
        assert np.isfinite(a.get_potential_energy()) and np.isfinite(a.get_forces()).all()


# --------------------------------------------------------------------------- non-finite outputs


def _nan_after(monkeypatch, key: str, after: int = 0) -> None:
    """Every ViSNet returns NaN in ``key`` from its ``after``-th call on (the calculator and
    predict evaluate private copies, so the class is patched)."""
    forward, calls = ViSNet.forward, [0]

    def poisoned(self: ViSNet, *args, **kwargs) -> dict[str, torch.Tensor]:
        out = forward(self, *args, **kwargs)
        calls[0] += 1
        if calls[0] > after:
            out[key] = out[key] * float("nan")
        return out

    monkeypatch.setattr(ViSNet, "forward", poisoned)


def _box() -> Atoms:
    return Atoms("CO", scaled_positions=[[0.1, 0.2, 0.3], [0.6, 0.55, 0.5]], cell=np.eye(3) * 4.5, pbc=True)


NAN_OUTPUTS = {"energy": "energy", "atomic_energy": "energies", "forces": "forces", "stress": "stress"}


@pytest.mark.parametrize("key", list(NAN_OUTPUTS))
def test_calculator_raises_instead_of_returning_nan(monkeypatch, key: str) -> None:
    calc = ViSNetCalculator(small_model(), device="cpu")
    _nan_after(monkeypatch, key)
    atoms = _box()
    atoms.calc = calc
    with pytest.raises(NonFiniteResultError, match=f"returned non-finite {NAN_OUTPUTS[key]}"):
        atoms.get_stress() if key == "stress" else atoms.get_forces()
    with pytest.raises(NonFiniteResultError, match=f"returned non-finite {NAN_OUTPUTS[key]}"):
        calc.calculate_batch([_box(), _box()], properties=["energy", "forces", "stress"])


def test_predict_raises_instead_of_returning_nan(monkeypatch) -> None:
    _nan_after(monkeypatch, "forces")
    with pytest.raises(FloatingPointError, match="non-finite forces"):
        predict(water_molecule(), model=small_model())


def test_md_stops_cleanly_when_the_model_returns_nan(monkeypatch, tmp_path: Path) -> None:
    calc = ViSNetCalculator(small_model(), device="cpu")
    _nan_after(monkeypatch, "forces", after=5)
    config = MDConfig(
        structure="ethanol",
        model=None,
        ensemble="nve",
        steps=50,
        traj_interval=1,
        log_interval=1,
        output_dir=tmp_path,
        progress=False,
        plots=False,
    )
    result = run_md(config, atoms=load_structure("ethanol"), calculator=calc)
    assert not result.completed and "non-finite forces" in result.message
    frames = read(result.paths.traj, ":")
    assert 1 <= len(frames) <= 5 and all(np.isfinite(f.get_forces()).all() for f in frames)
