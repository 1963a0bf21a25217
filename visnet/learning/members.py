"""Fine-tuning the committee members of a round with ``visnet fit`` (``--init`` each member from
its previous-round self; in round 0 from the start model, with seed ``seed + k``).

Each member is one ``visnet fit`` command line, run by a ``FitRunner``: by default a
``python -m visnet.cli fit ...`` subprocess (each fit in its own process, as DP-GEN runs its
trainer); ``visnet learn`` runs them in its own process instead. The command line is the
learning defaults (``TRAINING_DEFAULTS``), then the user's ``--train-config`` (which overrides
them), then what the loop sets (data file, splits, start model, run folder, seed).

A member's fit killed or interrupted before it wrote its finished ``model.pt`` resumes from its
own ``checkpoints/last.ckpt`` when the round is rerun (``visnet fit --ckpt_path last``), as an
interrupted ``visnet fit`` does; one whose fit had already ended (``max_epochs``, ``max_steps``,
early stopping or ``max_time``, as its ``last.ckpt`` records) is exported without training;
members whose ``model.pt`` is finished are not trained again.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from ase import Atoms

from visnet.errors import VisnetError
from visnet.files.atomic import atomic_open
from visnet.inference.committee import MODEL_FILE, committee_members
from visnet.io.model_files import load_model, read_checkpoint
from visnet.training.ensemble import member_dir
from visnet.training.export import export_model
from visnet.training.preflight import parse_max_time, recorded_best, training_ended

__all__ = [
    "CHECKPOINTS",
    "LAST_CHECKPOINT",
    "MODEL_FILE",
    "PER_MEMBER_OPTIONS",
    "TRAINING_DEFAULTS",
    "FitRunner",
    "check_train_config",
    "committee_dir",
    "fit_arguments",
    "fit_member",
    "given_committee",
    "max_epochs",
    "member_model",
    "split_sizes",
    "subprocess_fit",
    "trainer_limits",
    "write_training_set",
]

FitRunner = Callable[[list[str]], int]
# Training options of a fine-tune when the user's config does not say: a short run with a small
# learning rate (the start model is already trained), early stopping on the validation frames.
TRAINING_DEFAULTS: tuple[str, ...] = (
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.max_epochs=60",
    "--trainer.max_time=00:00:05:00",
    "--trainer.log_every_n_steps=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.gradient_clip_val=10.0",
    "--model.lr=5.0e-4",
    "--model.lr_warmup_steps=0",
    "--model.lr_patience=5",
    "--model.energy_weight=0.05",
    "--model.force_weight=0.95",
    "--data.batch_size=4",
    "--early_stopping.patience=15",
)
VAL_FRACTION = 0.1  # of the labelled frames, at least one
# Where ``visnet fit`` keeps a member's checkpoints (``--checkpoint.dirpath`` left unset) and the
# one it resumes from.
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"


# ``--train-config`` options that would be the same for every member, and why that is wrong: each
# member keeps its checkpoints in ``<member folder>/checkpoints`` and resumes from its own last.ckpt.
PER_MEMBER_OPTIONS = {
    "checkpoint.dirpath": "every committee member would write its checkpoints to that one folder (and a rerun "
    "resume a member from another's last.ckpt); remove it: each member keeps its own in <member folder>/checkpoints",
    "ckpt_path": "every committee member would start from that one checkpoint; remove it: a rerun resumes each "
    "member from its own last.ckpt",
}


def check_train_config(path: str | Path) -> None:
    """Refuse a ``--train-config`` that is not a YAML mapping of ``visnet fit`` options, or that sets
    an option of ``PER_MEMBER_OPTIONS`` (nested, ``checkpoint: {dirpath: ...}``, or dotted).

    Raises:
        ValueError: one line naming the file and the option.
    """
    try:
        config = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        reason = " ".join(str(err).split())
        raise ValueError(f"--train-config {path} is not valid YAML: {reason}") from None
    if config is None:
        return
    if not isinstance(config, dict):
        raise ValueError(f"--train-config {path} is not a mapping of visnet fit options (trainer:, model:, data:, ...)")
    for key, reason in PER_MEMBER_OPTIONS.items():
        section, _, name = key.rpartition(".")
        nested = config.get(section) if section else config
        value = nested.get(name) if isinstance(nested, dict) else None
        if value is not None or config.get(key) is not None:
            raise ValueError(f"--train-config {path} sets {key}: {reason}")


def subprocess_fit(argv: list[str]) -> int:
    """Run ``visnet <argv>`` in a new Python process; returns its exit code."""
    return subprocess.run([sys.executable, "-m", "visnet.cli", *argv], check=False).returncode


def split_sizes(total: int) -> tuple[int, int]:
    """(train, validation) frames of a training set of ``total`` >= 2 frames (no test split)."""
    val = max(1, round(VAL_FRACTION * total))
    return total - val, val


def write_training_set(path: Path, label_files: Sequence[Path]) -> int:
    """Write every frame of ``label_files`` (in order) to the extended XYZ ``path``, atomically.

    Returns:
        The number of frames written.
    """
    import ase.io

    frames: list[Atoms] = []
    for file in label_files:
        if file.exists() and file.stat().st_size:
            frames.extend(ase.io.read(file, ":", format="extxyz"))
    with atomic_open(path, "w") as handle:
        ase.io.write(handle, frames, format="extxyz")
    return len(frames)


def fit_arguments(start: str, data: Path, total: int, run_dir: Path, seed: int, train_config: str | None) -> list[str]:
    """The ``visnet fit`` command line of one member (see the module docstring for the order)."""
    train, val = split_sizes(total)
    config = ["--config", str(train_config)] if train_config else []
    return [
        "fit",
        *TRAINING_DEFAULTS,
        *config,
        f"--data.path={data}",
        f"--data.num_train={train}",
        f"--data.num_val={val}",
        "--data.num_test=0",
        f"--data.seed={seed}",
        f"--seed_everything={seed}",
        f"--trainer.default_root_dir={run_dir}",
        "--init",
        str(start),
    ]


def fit_member(argv: list[str], run_dir: Path, runner: FitRunner) -> Path:
    """Fine-tune one member unless its finished ``model.pt`` exists; returns the model file.

    A fit that was killed (no ``model.pt``) or interrupted (``model.pt`` marked ``"interrupted":
    true``) continues from its ``checkpoints/last.ckpt`` (``argv`` plus ``--ckpt_path last``); one killed
    after it had ended (its last epoch, early stopping or its time limit, as ``last.ckpt`` records:
    ``visnet.training.preflight.training_ended``), before its export, is exported from its best
    checkpoint without training. A folder without a readable ``last.ckpt`` (killed before its first
    epoch ended) is removed and the member trained from the start.

    Raises:
        VisnetError: the fit failed or wrote no model (its folder is named).
    """
    model = run_dir / MODEL_FILE
    if _finished(model):
        return model
    last = run_dir / CHECKPOINTS / LAST_CHECKPOINT
    checkpoint = _readable_checkpoint(last)
    if checkpoint is not None:
        if training_ended(checkpoint, **trainer_limits(argv)) is not None:
            return export_model(recorded_best(checkpoint, last), model)
        argv = [*argv, "--ckpt_path=last"]
    elif run_dir.exists():
        shutil.rmtree(run_dir)
    code = runner(argv)
    if code != 0 or not _finished(model):
        raise VisnetError(
            f"fine-tuning {run_dir} failed (visnet fit exit code {code}); its output is above. "
            f"Command: visnet {' '.join(argv)}"
        )
    return model


def _finished(model: Path) -> bool:
    """Whether ``model`` is the export of a finished fit (not of one stopped by Ctrl-C)."""
    return model.is_file() and not load_model(model, device="cpu").metadata.get("interrupted", False)


def _readable_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint ``path``, or None when it is missing or unreadable (a write cut short by a kill)."""
    if not path.is_file():
        return None
    try:
        return read_checkpoint(path)
    except ValueError:
        return None


def max_epochs(argv: list[str]) -> int | None:
    """The ``--trainer.max_epochs`` a ``visnet fit`` command line ends with: the last value given,
    by an option or a ``--config`` file, read in order as the command line is; None: not given."""
    return _whole_number(_trainer_option(argv, "max_epochs"))


def trainer_limits(argv: list[str]) -> dict[str, Any]:
    """``max_epochs``, ``max_steps`` (int or None) and ``max_time`` (timedelta or None) of a ``visnet
    fit`` command line, each its last value given (``max_epochs``); one that does not parse is None
    (the fit itself reports it)."""
    value = _trainer_option(argv, "max_time")
    try:
        if isinstance(value, str) and value.lstrip().startswith("{"):  # --trainer.max_time={hours: 1}
            value = yaml.safe_load(value)
        max_time = parse_max_time(value)
    except (ValueError, yaml.YAMLError):
        max_time = None
    return {
        "max_epochs": max_epochs(argv),
        "max_steps": _whole_number(_trainer_option(argv, "max_steps")),
        "max_time": max_time,
    }


def _trainer_option(argv: list[str], name: str) -> Any:
    """The last ``--trainer.<name>`` of ``argv``, given as an option or in a ``--config`` file."""
    value: Any = None
    for i, arg in enumerate(argv):
        option, _, given = arg.partition("=")
        if option == f"--trainer.{name}":
            value = given if given else (argv[i + 1] if i + 1 < len(argv) else None)
        elif option == "--config" and (given or i + 1 < len(argv)):
            config = yaml.safe_load(Path(given or argv[i + 1]).read_text()) or {}
            trainer = config.get("trainer") if isinstance(config, dict) else None
            if isinstance(trainer, dict) and name in trainer:
                value = trainer[name]
    return value


def _whole_number(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def committee_dir(round_folder: Path) -> Path:
    """The folder of a round's committee (an ensemble run folder: ``member_k/model.pt``)."""
    return round_folder / "committee"


def member_model(round_folder: Path, k: int) -> Path:
    """Member ``k``'s model file of the committee trained in ``round_folder``."""
    return member_dir(committee_dir(round_folder), k) / MODEL_FILE


def given_committee(spec: str) -> list[Path] | None:
    """The member model files of an ensemble run folder ``spec``; None when ``spec`` is not one."""
    path = Path(spec)
    if not path.is_dir():
        return None
    return committee_members(path)
