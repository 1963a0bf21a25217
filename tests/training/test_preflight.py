"""``training_ended``: whether the fit that wrote a checkpoint had ended, from what Lightning records
in it (fit-loop epochs, global step, EarlyStopping's state, the Timer's elapsed training time), and
``ended_fit``: the same for ``visnet fit --ckpt_path`` against the invocation's limits, and
``recorded_best``: the best checkpoint it names. The checkpoints here are the dicts Lightning 2.6
writes, cut to those keys (real ones in tests/learning/test_learn.py and
tests/training/test_resume_ended.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch

from visnet.training.preflight import EndedFit, ended_fit, parse_max_time, recorded_best, training_ended

EARLY_STOPPING = "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}"


def _checkpoint(early_stopping: dict[str, Any] | None = None, timer: float | None = None, elapsed: float = 0.0):
    """A checkpoint of 5 epochs and 20 steps; ``timer``: Lightning's Timer's training seconds;
    ``elapsed``: visnet's ElapsedTime's (a Timer without a limit, which a resumed Timer does not read)."""
    callbacks: dict[str, Any] = {"ElapsedTime": {"time_elapsed": {"train": elapsed}}}
    if early_stopping is not None:
        callbacks[EARLY_STOPPING] = {"wait_count": 0, "stopped_epoch": 0, "patience": 3, **early_stopping}
    if timer is not None:
        callbacks["Timer"] = {"time_elapsed": {"train": timer, "validate": 1.0}}
    progress = {"ready": 5, "completed": 5, "started": 5, "processed": 5}
    return {
        "epoch": 4,
        "global_step": 20,
        "loops": {"fit_loop": {"epoch_progress": {"current": progress}}},
        "callbacks": callbacks,
    }


@pytest.mark.parametrize(
    "checkpoint, limits, reason",
    [
        (_checkpoint(), {"max_epochs": 5}, "max_epochs"),
        (_checkpoint(), {"max_epochs": 6}, None),
        (_checkpoint(), {"max_epochs": -1, "max_steps": 20}, "max_steps"),
        (_checkpoint(), {"max_steps": -1}, None),
        # Lightning >= 2.5: EarlyStopping's stopping_reason (3: patience exhausted, 0: not stopped)
        (
            _checkpoint({"stopping_reason": 3, "wait_count": 3, "stopped_epoch": 4}),
            {"max_epochs": 60},
            "early stopping",
        ),
        (_checkpoint({"stopping_reason": 1, "stopped_epoch": 4}), {}, "early stopping"),
        (_checkpoint({"stopping_reason": 0, "wait_count": 2}), {"max_epochs": 60}, None),
        # older checkpoints: patience reached, or a stopped epoch
        (_checkpoint({"wait_count": 3}), {}, "early stopping"),
        (_checkpoint({"wait_count": 2}), {}, None),
        (_checkpoint({"stopped_epoch": 4}), {}, "early stopping"),
        # the Timer of trainer.max_time
        (_checkpoint(timer=60.2), {"max_time": timedelta(minutes=1)}, "max_time"),
        (_checkpoint(timer=59.0), {"max_time": timedelta(minutes=1)}, None),
        (_checkpoint(timer=60.2), {}, None),
        (_checkpoint(elapsed=600.0), {"max_time": timedelta(minutes=1)}, None),
    ],
)
def test_training_ended(checkpoint, limits, reason):
    assert training_ended(checkpoint, **limits) == reason


def test_parse_max_time():
    assert parse_max_time("00:01:30:00") == timedelta(hours=1, minutes=30)
    assert parse_max_time({"minutes": 2}) == timedelta(minutes=2)
    assert parse_max_time(None) is None
    with pytest.raises(ValueError, match="--trainer.max_time '90' is not a duration"):
        parse_max_time("90")
    with pytest.raises(ValueError, match="must be a positive duration"):
        parse_max_time("00:00:00:00")


# ------------------------------------------------------------------ ended_fit: `visnet fit --ckpt_path`
CHECKPOINT_STATE = "RunCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_train_steps': 0}"


def _saved_run(tmp_path: Path, best: str | None, **early_stopping: Any) -> Path:
    """A run folder whose checkpoints/last.ckpt is ``_checkpoint`` (early stopped, Timer at 60.2 s),
    recording ``best`` as its best checkpoint (written beside it)."""
    checkpoint = _checkpoint({"stopping_reason": 0, **early_stopping}, timer=60.2)
    checkpoint["callbacks"][CHECKPOINT_STATE] = {"best_model_path": best}
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(checkpoint, folder / "last.ckpt")
    if best is not None:
        torch.save(checkpoint, folder / Path(best).name)
    return folder


def test_ended_fit_compares_with_this_invocations_limits(tmp_path):
    folder = _saved_run(tmp_path, best="/elsewhere/moved/checkpoints/best.ckpt")
    limits = {"max_epochs": 60, "max_steps": -1, "max_time": "00:00:01:00"}
    ended = ended_fit("last", folder, limits)
    assert ended == EndedFit(folder / "last.ckpt", "max_time", epoch=5, steps=20, best=folder / "best.ckpt")
    # the Timer counts over restarts: a larger limit (or time left) resumes, as does no limit
    assert ended_fit("last", folder, {**limits, "max_time": {"minutes": 2}}) is None
    assert ended_fit("last", folder, {**limits, "max_time": None}) is None
    assert ended_fit("last", folder, {**limits, "max_steps": 20}).reason == "max_steps"
    # a new run, or "last" with no last.ckpt yet, is no resume
    assert ended_fit(None, folder, limits) is None
    assert ended_fit("last", tmp_path / "empty", limits) is None


def test_ended_fit_names_the_best_checkpoint_and_how_to_train_on(tmp_path):
    folder = _saved_run(tmp_path, best=None, stopping_reason=3, stopped_epoch=4)
    ended = ended_fit(str(folder / "last.ckpt"), folder, {"max_epochs": 60})
    assert ended.reason == "early stopping" and ended.best == folder / "last.ckpt"  # records no best
    assert ended.message(tmp_path / "run") == (
        f"{tmp_path / 'run'}: training already ended in epoch 5, at step 20 (early stopping); nothing to resume — "
        f"to train on, fine-tune its model in a new run folder (--init {tmp_path / 'run' / 'model.pt'}; resumed, "
        "early stopping would stop it again)"
    )


def test_recorded_best_looks_in_the_checkpoints_folder_beside_the_file_then_where_written(tmp_path):
    """One lookup for ``visnet fit`` (``ended_fit``) and ``visnet learn`` (a member's export)."""
    written = tmp_path / "written" / "best.ckpt"
    checkpoint = {"callbacks": {CHECKPOINT_STATE: {"best_model_path": str(written)}}}
    folder, copy = tmp_path / "checkpoints", tmp_path / "copy" / "last.ckpt"
    for path in (written, folder / "best.ckpt", copy.parent / "best.ckpt"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    assert recorded_best(checkpoint, copy, folder) == folder / "best.ckpt"
    assert recorded_best(checkpoint, copy) == copy.parent / "best.ckpt"
    (copy.parent / "best.ckpt").unlink()
    assert recorded_best(checkpoint, copy) == written
    written.unlink()
    assert recorded_best(checkpoint, copy) == copy  # records none that exists
    assert recorded_best({"callbacks": {CHECKPOINT_STATE: {"best_model_path": ""}}}, copy) == copy
