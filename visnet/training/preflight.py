"""Checks of a ``visnet fit`` run made before any training: limits and paths that would otherwise
fail with a traceback at start, or only after the whole training ran (``model.pt`` a folder).

Every check raises ``ValueError`` naming the option or path. ``ended_fit`` finds a resume whose fit
had already ended under the invocation's limits (``visnet fit`` then trains nothing and says so).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from visnet.files.paths import check_output_folder
from visnet.io.model_files import read_checkpoint
from visnet.model.hyperparameters import STATISTICS, with_legacy_defaults
from visnet.training.export import MODEL_FILE

__all__ = [
    "EndedFit",
    "check_checkpoint_architecture",
    "check_fit_options",
    "check_resume",
    "check_run_paths",
    "ended_fit",
    "epochs_done",
    "parse_max_time",
    "recorded_best",
    "training_ended",
]

_DURATION = re.compile(r"^\d+:\d{1,2}:\d{1,2}:\d{1,2}$")
_TIMEDELTA_KEYS = {"weeks", "days", "hours", "minutes", "seconds", "milliseconds", "microseconds"}


def parse_max_time(value: Any) -> timedelta | None:
    """``trainer.max_time`` as a duration: None, "DD:HH:MM:SS", a timedelta or a dict of timedelta
    fields (``{hours: 12}``), > 0.

    Raises:
        ValueError: anything else, naming the value.
    """
    hint = "expected DD:HH:MM:SS (e.g. 00:12:00:00) or a dict such as {hours: 12}"
    if value is None or isinstance(value, timedelta):
        duration = value
    elif isinstance(value, str) and _DURATION.match(value.strip()):
        days, hours, minutes, seconds = (int(part) for part in value.strip().split(":"))
        duration = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    elif isinstance(value, dict) and value and set(value) <= _TIMEDELTA_KEYS:
        try:
            duration = timedelta(**{k: float(v) for k, v in value.items()})
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"--trainer.max_time {value!r} is not a duration: {hint}") from None
    else:
        raise ValueError(f"--trainer.max_time {value!r} is not a duration: {hint}")
    if duration is not None and duration <= timedelta(0):
        raise ValueError(f"--trainer.max_time {value!r} must be a positive duration")
    return duration


def _check_limit(name: str, value: Any) -> None:
    """An epoch/step limit: None, -1 (no limit) or an integer >= 0."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise ValueError(f"--trainer.{name} must be a non-negative integer (or -1 for no limit), got {value!r}")


def check_fit_options(trainer: dict[str, Any]) -> None:
    """``max_time``, ``max_epochs``, ``min_epochs``, ``max_steps`` of the trainer config."""
    parse_max_time(trainer.get("max_time"))
    for name in ("max_epochs", "min_epochs", "max_steps", "min_steps"):
        _check_limit(name, trainer.get(name))


def check_run_paths(run_dir: str | os.PathLike, checkpoint_dir: str | os.PathLike | None) -> None:
    """The run folder and checkpoints folder are (or can become) writable folders, and the
    exported ``model.pt`` is not a folder, before training starts."""
    run_dir = Path(run_dir)
    check_output_folder(run_dir, "run folder (--trainer.default_root_dir)")
    if checkpoint_dir is not None:
        check_output_folder(Path(checkpoint_dir), "checkpoints folder (--checkpoint.dirpath)")
        for name in ("last.ckpt", "best.ckpt"):
            if (Path(checkpoint_dir) / name).is_dir():
                raise ValueError(f"checkpoint path {Path(checkpoint_dir) / name} is a folder, not a file")
    model = run_dir / MODEL_FILE
    if model.is_dir() or (model.exists() and not model.is_file()):
        raise ValueError(f"the exported model path {model} is a folder (or not a regular file): remove or rename it")


def epochs_done(checkpoint: dict[str, Any]) -> int:
    """Epochs a Lightning checkpoint has trained (processed epochs of its fit loop)."""
    try:
        return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):
        return int(checkpoint.get("epoch", -1)) + 1


def training_ended(
    checkpoint: dict[str, Any],
    *,
    max_epochs: int | None = None,
    max_steps: int | None = None,
    max_time: timedelta | None = None,
) -> str | None:
    """Why the fit that wrote the Lightning ``checkpoint`` had ended when it was written, as the
    checkpoint records it; None when resuming it would train on.

    A fit ends at ``max_epochs`` epochs (the fit loop's processed epochs) or ``max_steps``
    optimizer steps, when ``EarlyStopping`` stopped it (its ``stopping_reason``; in checkpoints
    without one, ``wait_count`` reaching ``patience`` or a ``stopped_epoch``), or when its ``Timer``
    (Lightning's, present with ``trainer.max_time``) has counted ``max_time`` of training. Resumed,
    such a fit would train once more (a step past the time limit, an epoch past the patience) before
    it stopped again.

    Args:
        checkpoint: a ``last.ckpt`` (``read_checkpoint``).
        max_epochs, max_steps: the trainer's limits (None or -1: none).
        max_time: the trainer's ``max_time`` (``parse_max_time``); None: none.

    Returns:
        "max_epochs", "max_steps", "early stopping", "max_time" or None.
    """
    if max_epochs is not None and 0 <= max_epochs <= epochs_done(checkpoint):
        return "max_epochs"
    if max_steps is not None and 0 <= max_steps <= int(checkpoint.get("global_step", 0)):
        return "max_steps"
    callbacks = checkpoint.get("callbacks") or {}
    for state in callbacks.values():
        if isinstance(state, dict) and {"wait_count", "patience", "stopped_epoch"} <= set(state):
            reason = state.get("stopping_reason")  # EarlyStoppingReason; 0: not stopped
            if reason is None:
                stopped = state["stopped_epoch"] > 0 or state["wait_count"] >= state["patience"]
            else:
                stopped = int(reason) != 0
            if stopped:
                return "early stopping"
    timer = callbacks.get("Timer")
    elapsed = timer.get("time_elapsed", {}).get("train") if isinstance(timer, dict) else None
    if max_time is not None and elapsed is not None and elapsed >= max_time.total_seconds():
        return "max_time"
    return None


def resolve_resume(ckpt_path: str | None, checkpoint_dir: str | os.PathLike | None) -> Path | None:
    """The checkpoint file ``--ckpt_path`` resumes from (``last``: ``<checkpoints>/last.ckpt``)."""
    if ckpt_path is None or ckpt_path in ("best", "hpc", "registry"):
        return None
    if ckpt_path == "last":
        last = Path(checkpoint_dir) / "last.ckpt" if checkpoint_dir is not None else None
        return last if last is not None and last.is_file() else None
    return Path(ckpt_path)


# What to do to train on, by the reason ``training_ended`` gives.
_TRAIN_ON = {
    "max_epochs": "raise --trainer.max_epochs to train on",
    "max_steps": "raise --trainer.max_steps to train on",
    "max_time": "raise --trainer.max_time to train on (the time spent counts over restarts)",
    "early stopping": "to train on, fine-tune its model in a new run folder (--init {model}; resumed, early "
    "stopping would stop it again)",
}


@dataclass(frozen=True)
class EndedFit:
    """A ``--ckpt_path`` checkpoint whose fit had already ended under this invocation's limits.

    Attributes:
        checkpoint: the checkpoint file resumed from.
        reason: ``training_ended``'s: "max_epochs", "max_steps", "max_time" or "early stopping".
        epoch: the epoch it ended in (1-based: the last it trained, fully or in part).
        steps: the optimizer steps it had trained.
        best: the best checkpoint it records (found in the checkpoints folder, where it was
            written, or ``checkpoint`` itself when it records none that exists).
    """

    checkpoint: Path
    reason: str
    epoch: int
    steps: int
    best: Path

    def message(self, run_dir: str | os.PathLike) -> str:
        """One line: where, when and why it ended, and how to train on."""
        hint = _TRAIN_ON[self.reason].format(model=Path(run_dir) / MODEL_FILE)
        return (
            f"{run_dir}: training already ended in epoch {self.epoch}, at step {self.steps} ({self.reason}); "
            f"nothing to resume — {hint}"
        )


def ended_fit(
    ckpt_path: str | None, checkpoint_dir: str | os.PathLike | None, trainer: dict[str, Any]
) -> EndedFit | None:
    """The checkpoint ``--ckpt_path`` resumes from, when its fit had ended under the limits of
    ``trainer`` (this invocation's trainer config: ``max_epochs``, ``max_steps``, ``max_time``; see
    ``training_ended``); None for a new run, or a resume that would train on (a limit raised above
    what the checkpoint reached, ``max_time`` not yet spent: the Timer's seconds count over restarts).

    Args:
        ckpt_path: ``--ckpt_path`` as given ("last", a file, ...; None: a new run).
        checkpoint_dir: the run's checkpoints folder (where "last" and the best checkpoint are looked for).
        trainer: the trainer config (checked by ``check_fit_options``).
    """
    path = resolve_resume(ckpt_path, checkpoint_dir)
    if path is None or not path.is_file():
        return None
    checkpoint = read_checkpoint(path)
    reason = training_ended(
        checkpoint,
        max_epochs=trainer.get("max_epochs"),
        max_steps=trainer.get("max_steps"),
        max_time=parse_max_time(trainer.get("max_time")),
    )
    if reason is None:
        return None
    epoch, steps = int(checkpoint.get("epoch", 0)) + 1, int(checkpoint.get("global_step", 0))
    return EndedFit(path, reason, epoch, steps, recorded_best(checkpoint, path, checkpoint_dir))


def recorded_best(
    checkpoint: dict[str, Any], path: str | os.PathLike, checkpoint_dir: str | os.PathLike | None = None
) -> Path:
    """The best checkpoint that the Lightning ``checkpoint`` (read from the file ``path``, e.g. a
    ``last.ckpt``) records (``ModelCheckpoint``'s ``best_model_path``): by its name in
    ``checkpoint_dir``, then beside ``path`` (the run folder may have moved since), then where it
    was written; ``path`` itself when it records none that exists.

    Args:
        checkpoint: the checkpoint's contents (``read_checkpoint``).
        path: the file it was read from.
        checkpoint_dir: the run's checkpoints folder, looked in first (None: beside ``path`` first).
    """
    path = Path(path)
    folders = [Path(checkpoint_dir)] if checkpoint_dir is not None else []
    for state in (checkpoint.get("callbacks") or {}).values():
        best = state.get("best_model_path") if isinstance(state, dict) else None
        if not best:
            continue
        for candidate in [*(folder / Path(best).name for folder in [*folders, path.parent]), Path(best)]:
            if candidate.is_file():
                return candidate
    return path


def check_resume(
    ckpt_path: str | None,
    checkpoint_dir: str | os.PathLike | None,
    max_epochs: int | None,
    init: str | None = None,
) -> None:
    """Refuse resuming from a checkpoint that has already trained ``max_epochs`` epochs (nothing
    would be trained, yet the run would end and export as if it had), and resuming a fine-tuning
    checkpoint without ``--init`` (the data would stay in their own energy unit, not the start
    model's) or a from-scratch checkpoint with ``--init`` (the start model's weights would be
    replaced by the checkpoint's: nothing of it would be used).

    Args:
        ckpt_path: ``--ckpt_path`` as given ("last", a file, ...; None: a new run).
        checkpoint_dir: the run's checkpoints folder (where "last" is looked for).
        max_epochs: ``--trainer.max_epochs`` (None or -1: no limit).
        init: ``--init`` (``model.init``) as given; None: not a fine-tuning run.
    """
    path = resolve_resume(ckpt_path, checkpoint_dir)
    if path is None or not path.is_file():
        return
    checkpoint = read_checkpoint(path)
    recorded = (checkpoint.get("hyper_parameters") or {}).get("init")
    if recorded is not None and init is None:
        raise ValueError(
            f"--ckpt_path {ckpt_path}: checkpoint {path} is a fine-tuning run (--init {recorded}): "
            f"resume it with --init {recorded}"
        )
    if recorded is None and init is not None:
        raise ValueError(
            f"--ckpt_path {ckpt_path}: checkpoint {path} was not fine-tuned, so --init {init} would be "
            "replaced by its weights: drop --init to resume it, or give the checkpoint as --init to fine-tune it"
        )
    if max_epochs is None or max_epochs < 0:
        return
    done = epochs_done(checkpoint)
    if done >= max_epochs:
        raise ValueError(
            f"--ckpt_path {ckpt_path}: checkpoint {path} has already trained {done} epochs and "
            f"--trainer.max_epochs is {max_epochs}: nothing to train (raise --trainer.max_epochs)"
        )


def check_checkpoint_architecture(
    subcommand: str, ckpt_path: str, checkpoint: dict[str, Any], given: dict[str, Any]
) -> None:
    """Refuse ``--model.*`` architecture options that contradict the checkpoint ``--ckpt_path``
    names: Lightning replaces them with the checkpoint's, so they would be ignored silently.

    Args:
        subcommand: "fit", "validate", "test" or "predict" (for the message).
        ckpt_path: the checkpoint file; checkpoint: its contents (``read_checkpoint``).
        given: the ``model`` options the user gave (on the command line or in a config file),
            whatever their value, default included; options left unset are not compared.
    """
    stored = (checkpoint.get("hyper_parameters") or {}).get("model_hparams")
    if not isinstance(stored, dict):
        return
    stored = with_legacy_defaults(stored)  # checkpoints from before cutoff_type were cosine
    if given.get("output_head") is None:  # None: the head follows the target, not a choice of head
        given = {k: v for k, v in given.items() if k != "output_head"}
    names = sorted((set(stored) & set(given)) - set(STATISTICS) - {"output_key", "derivative"})
    differing = [f"{n} {stored[n]!r} → {given[n]!r}" for n in names if given[n] != stored[n]]
    if not differing:
        return
    verb = "resume" if subcommand == "fit" else subcommand
    hint = (
        "resume with the checkpoint's settings or start a new run in another folder"
        if subcommand == "fit"
        else f"the checkpoint's architecture is what {subcommand} runs: drop these options or use the run's config.yaml"
    )
    raise ValueError(
        f"cannot {verb}: the checkpoint {ckpt_path} was trained with other model hyperparameters "
        f"({', '.join(differing)}); {hint}"
    )
