"""Fine-tuning the committee members of a round with ``visnet fit`` (``--init`` each member from
its previous-round self; in round 0 from the start model, with seed ``seed + k``).

Each member is one ``visnet fit`` command line, run by a ``FitRunner``: by default a
``python -m visnet.cli fit ...`` subprocess (each fit in its own process, as DP-GEN runs its
trainer); ``visnet learn`` runs them in its own process instead. The command line is the
learning defaults (``TRAINING_DEFAULTS``), then the user's ``--train-config`` (which overrides
them), then what the loop sets (data file, splits, start model, run folder, seed).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ase import Atoms

from visnet.errors import VisnetError
from visnet.files.atomic import atomic_open
from visnet.inference.committee import MODEL_FILE, committee_members
from visnet.training.ensemble import member_dir

__all__ = [
    "MODEL_FILE",
    "TRAINING_DEFAULTS",
    "FitRunner",
    "committee_dir",
    "fit_arguments",
    "fit_member",
    "given_committee",
    "member_model",
    "split_sizes",
    "subprocess_fit",
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
    """Fine-tune one member unless its ``model.pt`` exists; returns the model file.

    A folder left by a killed fit (no ``model.pt``) is removed and the member trained again.

    Raises:
        VisnetError: the fit failed or wrote no model (its folder is named).
    """
    model = run_dir / MODEL_FILE
    if model.is_file():
        return model
    if run_dir.exists():
        shutil.rmtree(run_dir)
    code = runner(argv)
    if code != 0 or not model.is_file():
        raise VisnetError(
            f"fine-tuning {run_dir} failed (visnet fit exit code {code}); its output is above. "
            f"Command: visnet {' '.join(argv)}"
        )
    return model


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
