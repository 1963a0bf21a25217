"""``visnet fit --ckpt_path`` of a run whose fit had already ended (early stopping, ``max_time``,
``max_steps``): nothing is trained (Lightning trained one more epoch or step before stopping again),
one line says so, exit code 0, ``model.pt`` kept or exported from the best checkpoint. A limit of
this invocation above what the checkpoint reached (``max_time`` counts over restarts) trains on,
``max_steps`` included from a checkpoint at an epoch's end. The tiny config: 32 training frames in
batches of 8, 4 steps per epoch."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import REPO, shared_file

import visnet
from visnet.cli import main as visnet_main
from visnet.training.preflight import epochs_done

TINY = str(REPO / "configs" / "tiny.yaml")
# No validation loss improves on the first by 1e6: early stopping after epoch 2 (step 8).
EARLY_STOPPING = "trainer:\n  max_epochs: 50\nearly_stopping:\n  patience: 1\n  min_delta: 1.0e6\n"
# A 1 s time limit, patience too large to stop first.
ONE_SECOND = "trainer:\n  max_epochs: 100000\n  max_time: '00:00:00:01'\nearly_stopping:\n  patience: 100000\n"


def _fit(run_dir: Path, *extra: str) -> int:
    data = str(shared_file("rmd17", "rmd17_ethanol_train1000.npz"))
    args = ["--config", TINY, "--data.path", data, "--trainer.default_root_dir", str(run_dir)]
    return visnet_main(["fit", *args, "--trainer.enable_progress_bar", "false", *extra])


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "limits.yaml"
    path.write_text(text)
    return str(path)


def _last(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def _resumed_and_ended(run_dir: Path, capsys, *extra: str) -> str:
    """Resume with ``extra``: exit 0, nothing trained (last.ckpt and logs untouched); its one line."""
    last = (run_dir / "checkpoints" / "last.ckpt").read_bytes()
    logs = sorted((run_dir / "logs").iterdir())
    capsys.readouterr()
    assert _fit(run_dir, *extra, "--ckpt_path", "last") == 0
    out = capsys.readouterr().out
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == last
    assert sorted((run_dir / "logs").iterdir()) == logs  # no new version_N: no trainer ran
    (line,) = out.splitlines()
    return line


def test_an_early_stopped_fit_is_not_trained_again(tmp_path, capsys):
    run = tmp_path / "run"
    config = _config(tmp_path, EARLY_STOPPING)
    assert _fit(run, "--config", config) == 0
    assert _last(run)["global_step"] == 8
    model = (run / "model.pt").read_bytes()
    line = _resumed_and_ended(run, capsys, "--config", config)
    assert line.startswith(f"{run}: training already ended in epoch 2, at step 8 (early stopping); nothing to resume")
    assert (run / "model.pt").read_bytes() == model
    # a larger max_epochs does not help: early stopping's state (patience included) is restored
    (run / "model.pt").unlink()  # killed before its export
    line = _resumed_and_ended(run, capsys, "--config", config, "--trainer.max_epochs", "60")
    assert line.endswith(f"; exported model: {(run / 'model.pt').resolve()}")
    assert visnet.load_model(run / "model.pt").metadata["checkpoint"] == str(run / "checkpoints" / "best.ckpt")


def test_a_timed_out_fit_trains_on_only_with_more_time(tmp_path, capsys):
    run = tmp_path / "run"
    config = _config(tmp_path, ONE_SECOND)
    assert _fit(run, "--config", config) == 0
    ended = _last(run)
    assert ended["callbacks"]["Timer"]["time_elapsed"]["train"] >= 1.0
    line = _resumed_and_ended(run, capsys, "--config", config)
    assert f"at step {ended['global_step']} (max_time); nothing to resume — raise --trainer.max_time" in line
    assert _fit(run, "--config", config, "--trainer.max_time", "00:00:00:02", "--ckpt_path", "last") == 0
    resumed = _last(run)
    assert resumed["global_step"] > ended["global_step"]
    assert resumed["callbacks"]["Timer"]["time_elapsed"]["train"] >= 2.0


def test_a_fit_at_max_steps_is_not_trained_again(tmp_path, capsys):
    run = tmp_path / "run"
    assert _fit(run, "--trainer.max_steps", "4") == 0
    assert _last(run)["global_step"] == 4
    line = _resumed_and_ended(run, capsys, "--trainer.max_steps", "4")
    assert line.startswith(f"{run}: training already ended in epoch 1, at step 4 (max_steps)")


def test_a_resume_with_time_left_trains_on(tmp_path):
    """As scripts/train_organic_model.py resumes: the same one-hour ``max_time`` (seconds of it
    spent) with more epochs trains the next epoch (4 steps)."""
    run = tmp_path / "run"
    limits = ["--trainer.max_time", "00:01:00:00", "--trainer.max_epochs"]
    assert _fit(run, *limits, "1") == 0
    assert _fit(run, *limits, "2", "--ckpt_path", "last") == 0
    assert _last(run)["global_step"] == 8


def test_a_fit_at_max_steps_trains_on_with_more_steps(tmp_path):
    """A fit stopped by ``max_steps`` at an epoch's end (4 steps: one epoch), resumed with a larger
    ``max_steps``, trains the next epoch as an uninterrupted 8-step run does. Lightning replayed the
    end of the finished epoch instead: early stopping raised a traceback (no ``val_loss``: no
    validation ran), and the epoch was counted twice. float64, one process: the same operations in
    the same order, so the weights are equal bit for bit."""
    float64 = ("--trainer.precision", "64-true")
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert _fit(whole, *float64, "--trainer.max_steps", "8") == 0
    assert _fit(part, *float64, "--trainer.max_steps", "4") == 0
    assert _last(part)["global_step"] == 4
    assert _fit(part, *float64, "--trainer.max_steps", "8", "--ckpt_path", "last") == 0
    resumed, uninterrupted = _last(part), _last(whole)
    assert resumed["global_step"] == uninterrupted["global_step"] == 8
    assert epochs_done(resumed) == epochs_done(uninterrupted) == 2
    assert resumed["loops"]["fit_loop"]["epoch_progress"] == uninterrupted["loops"]["fit_loop"]["epoch_progress"]
    assert resumed["state_dict"].keys() == uninterrupted["state_dict"].keys()
    for name, value in uninterrupted["state_dict"].items():
        assert value.dtype == torch.float64 or not value.is_floating_point(), name
        assert torch.equal(resumed["state_dict"][name], value), name
