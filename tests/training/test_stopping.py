"""``visnet fit`` stopped by SIGTERM or SIGINT (``visnet.training.stopping``): every rank stops at the
same batch end, the process exits with 128 + the signal number, ``model.pt`` is the best checkpoint
marked interrupted, and ``last.ckpt`` (the last validation's, written atomically) resumes to the
weights of an uninterrupted run. With two DDP processes Lightning's own SIGTERM handler deadlocked
(a broadcast inside the signal handler, paired with another rank's all-reduce).

The tiny config: 32 training frames in batches of 8, 4 steps per epoch. In-process fits send the
signal from ``training_step`` at a chosen step (deterministic); subprocess fits get it from outside
once their first ``last.ckpt`` exists. ``HANG_SECONDS`` is a guard against a hang, not a timing
assertion: the stop itself takes one batch, the exit a second or two of export and plotting.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path

import pytest
import torch
from conftest import REPO, shared_file
from lightning.pytorch.plugins import TorchCheckpointIO

from visnet.cli import main as visnet_main
from visnet.io.model_files import load_model, read_checkpoint
from visnet.training.module import ViSNetModule
from visnet.training.preflight import epochs_done
from visnet.training.stopping import AtomicCheckpointIO

TINY = str(REPO / "configs" / "tiny.yaml")
DATA = ("rmd17", "rmd17_ethanol_train1000.npz")
STEPS_PER_EPOCH = 4
SIGNAL_STEP = 6  # the 6th batch (epoch 2): the fit stops at its end; last.ckpt holds step 4
HANG_SECONDS = 120  # a stopped fit ends within one batch plus its export; a hang would never end
WAIT_SECONDS = 300  # for a subprocess to write its first last.ckpt on a contended machine
FLOAT64 = ("--trainer.precision", "64-true")
ENDLESS = ("--trainer.max_epochs", "100000", "--early_stopping.patience", "100000")  # runs until stopped


def _arguments(run_dir: Path, *extra: str) -> list[str]:
    data = str(shared_file(*DATA))
    args = ["fit", "--config", TINY, "--data.path", data, "--trainer.default_root_dir", str(run_dir)]
    return [*args, "--trainer.enable_progress_bar", "false", *extra]


def _last(run_dir: Path) -> dict:
    return read_checkpoint(run_dir / "checkpoints" / "last.ckpt")


@contextmanager
def _signal_in_training_step(*signums: int) -> Iterator[None]:
    """``ViSNetModule.training_step`` sends ``signums`` to this process in batch ``SIGNAL_STEP``."""
    original = ViSNetModule.training_step

    def step(self: ViSNetModule, batch: object, batch_idx: int) -> object:
        if self.global_step == SIGNAL_STEP - 1:
            for signum in signums:
                os.kill(os.getpid(), signum)
        return original(self, batch, batch_idx)

    ViSNetModule.training_step = step
    try:
        yield
    finally:
        ViSNetModule.training_step = original
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores SIGINT after a KeyboardInterrupt


def _fit_in_process(run_dir: Path, *extra: str) -> tuple[int, str]:
    err = io.StringIO()
    with redirect_stderr(err):
        code = visnet_main(_arguments(run_dir, *extra))
    return code, err.getvalue()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_fit_at_the_end_of_its_batch(tmp_path: Path, signum: int) -> None:
    run = tmp_path / "run"
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with _signal_in_training_step(signum):
        code, err = _fit_in_process(run, "--trainer.max_epochs", "3")
        after = {s: signal.getsignal(s) for s in handlers}
    assert code == 128 + signum
    assert f"{signal.Signals(signum).name} received: stopping (training, step {SIGNAL_STEP}, epoch 2)" in err
    assert "training was interrupted" in err and "--ckpt_path last" in err
    assert load_model(run / "model.pt").metadata["interrupted"] is True
    last = _last(run)
    assert last["global_step"] == STEPS_PER_EPOCH and epochs_done(last) == 1  # the last validation's
    assert after == handlers  # the fit's handlers are gone


def test_a_second_sigint_interrupts_at_once(tmp_path: Path) -> None:
    """The first SIGINT asks for a stop at the batch end; the second is Ctrl-C as without the
    handler: KeyboardInterrupt inside the batch, Lightning's exit code 1."""
    run = tmp_path / "run"
    with _signal_in_training_step(signal.SIGINT, signal.SIGINT):
        code, err = _fit_in_process(run, "--trainer.max_epochs", "3")
    assert code == 1
    assert "SIGINT received: stopping" not in err
    assert load_model(run / "model.pt").metadata["interrupted"] is True


def test_a_fit_stopped_by_sigterm_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    """float64, one process: the same operations in the same order, so equal bit for bit."""
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"
    with _signal_in_training_step(signal.SIGTERM):
        assert _fit_in_process(stopped, *FLOAT64, "--trainer.max_epochs", "3")[0] == 128 + signal.SIGTERM
    assert _fit_in_process(stopped, *FLOAT64, "--trainer.max_epochs", "3", "--ckpt_path", "last")[0] == 0
    assert _fit_in_process(whole, *FLOAT64, "--trainer.max_epochs", "3")[0] == 0
    resumed, uninterrupted = _last(stopped), _last(whole)
    assert resumed["global_step"] == uninterrupted["global_step"] == 3 * STEPS_PER_EPOCH
    assert resumed["state_dict"].keys() == uninterrupted["state_dict"].keys()
    for name, value in uninterrupted["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], value), name
    assert load_model(stopped / "model.pt").metadata.get("interrupted", False) is False


# --------------------------------------------------------------------------- signals from outside
def _live_processes(group: int) -> list[int]:
    """Processes of process group ``group`` still running (zombies count as ended)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live


def _wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.05)


def _signalled_fit(run_dir: Path, signum: int, *extra: str) -> tuple[int, str]:
    """Start ``visnet fit`` (its own session: every rank in one process group), send ``signum`` to
    the first process only once last.ckpt exists; its exit code and stderr once every process of
    the group has ended."""
    err = run_dir.parent / f"{run_dir.name}.stderr"
    command = [sys.executable, "-m", "visnet.cli", *_arguments(run_dir, *extra)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(err, "w") as handle:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=handle, start_new_session=True
        )
    try:
        last = run_dir / "checkpoints" / "last.ckpt"
        _wait_for(lambda: last.is_file() or process.poll() is not None, WAIT_SECONDS, "last.ckpt")
        assert process.poll() is None, err.read_text()[-3000:]
        process.send_signal(signum)
        code = process.wait(timeout=HANG_SECONDS)
        _wait_for(lambda: not _live_processes(process.pid), HANG_SECONDS, "end of every rank")
    finally:
        for pid in _live_processes(process.pid):  # a hang: end it, the assertions above report it
            os.kill(pid, signal.SIGKILL)
        process.wait()
    return code, err.read_text()


def _assert_stopped_and_resumable(run_dir: Path, code: int, err: str, signum: int) -> None:
    assert code == 128 + signum, err[-3000:]
    assert f"{signal.Signals(signum).name} received: stopping" in err
    assert load_model(run_dir / "model.pt").metadata["interrupted"] is True
    last = _last(run_dir)  # whole: it loads
    assert last["global_step"] == epochs_done(last) * STEPS_PER_EPOCH > 0  # an epoch's end: the last validation
    assert not list((run_dir / "checkpoints").glob(".*"))  # no temporary file left


def test_sigterm_from_outside_stops_one_process(tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, err = _signalled_fit(run, signal.SIGTERM, *ENDLESS)
    _assert_stopped_and_resumable(run, code, err, signal.SIGTERM)


DDP = ("--data.batch_size", "4", "--trainer.devices", "2", "--trainer.strategy", "ddp_find_unused_parameters_true")


@pytest.fixture(scope="module")
def ddp_stopped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """Two gloo processes (Lightning starts the second), SIGTERM to the first only (``kill PID``):
    (run folder, exit code, stderr)."""
    run = tmp_path_factory.mktemp("ddp") / "run"
    code, err = _signalled_fit(run, signal.SIGTERM, *DDP, *ENDLESS)
    return run, code, err


def test_sigterm_to_one_of_two_ddp_processes_stops_both(ddp_stopped: tuple[Path, int, str]) -> None:
    """The second rank learns of the signal at the next batch end's all-reduce and both end (every
    process of the group). Lightning's handler hung here: both ranks logged "Received SIGTERM: 15",
    then waited for each other for ever."""
    run, code, err = ddp_stopped
    _assert_stopped_and_resumable(run, code, err, signal.SIGTERM)
    assert "Received SIGTERM" not in err  # Lightning's handler did not run


@pytest.mark.slow
def test_a_ddp_fit_stopped_by_sigterm_resumes(ddp_stopped: tuple[Path, int, str]) -> None:
    run, _, _ = ddp_stopped
    epochs = epochs_done(_last(run)) + 1
    command = [sys.executable, "-m", "visnet.cli", *_arguments(run, *DDP, "--trainer.max_epochs", str(epochs))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    resumed = subprocess.run(
        [*command, "--ckpt_path", "last"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert epochs_done(_last(run)) == epochs
    assert load_model(run / "model.pt").metadata.get("interrupted", False) is False


# --------------------------------------------------------------------------- atomic checkpoints
class _WriteFails(RuntimeError):
    pass


def test_a_checkpoint_write_that_fails_midway_leaves_the_previous_one(tmp_path: Path, monkeypatch) -> None:
    """The new checkpoint is written beside the old one (not in the system temporary folder, from
    which Lightning's TorchCheckpointIO moves it: a copy across file systems) and renamed over it."""
    path = tmp_path / "checkpoints" / "last.ckpt"
    elsewhere = tmp_path / "system_tmp"
    elsewhere.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(elsewhere))
    io_plugin = AtomicCheckpointIO()
    assert isinstance(io_plugin, TorchCheckpointIO)
    io_plugin.save_checkpoint({"global_step": 4}, path)
    before = path.read_bytes()
    (path.parent / ".last.ckpt.stale.tmp").write_bytes(b"left by a kill")
    during: list[str] = []

    def half_a_write(obj: object, handle: io.BufferedWriter) -> None:
        handle.write(b"PK\x03\x04 half a checkpoint")
        handle.flush()
        during.extend(sorted(p.name for p in path.parent.iterdir() if p.stat().st_size > 0))
        raise _WriteFails

    monkeypatch.setattr(torch, "save", half_a_write)
    with pytest.raises(_WriteFails):
        io_plugin.save_checkpoint({"global_step": 8}, path)
    assert path.read_bytes() == before
    assert len(during) == 2 and during[1] == "last.ckpt"  # the new one is written beside it
    assert during[0].startswith(".last.ckpt.") and during[0] != ".last.ckpt.stale.tmp"
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temporary, the stale one removed
    assert list(elsewhere.iterdir()) == []
