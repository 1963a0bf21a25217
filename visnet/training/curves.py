"""Learning curves of a run folder, read from the CSV logger's ``logs/version_k/metrics.csv``.

One value per epoch and column: the last one logged in that epoch; a resumed run's later
``version_k`` folders override the epochs they repeat. ``elapsed_time`` (seconds since training
started, ``visnet.training.callbacks.ElapsedTime``) is the wall-clock axis; runs logged before it
existed have none.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["LearningCurves", "metrics_files", "read_learning_curves"]

_VERSION = re.compile(r"version_(\d+)")
TIME_COLUMN = "elapsed_time"
TRAIN_LOSS, VAL_LOSS, VAL_FORCES = "train_loss_epoch", "val_loss", "val_forces_mae"


@dataclass
class LearningCurves:
    """Per-epoch series of one run (NaN where an epoch did not log the quantity).

    Attributes:
        run_dir: the run folder.
        epoch: (E,) epoch numbers, counted from 1.
        time: (E,) wall-clock seconds since training started, or None when not logged.
        series: name -> (E,) values, in the training units: "train loss", "val loss",
            "val <target> MAE" (energy per molecule, or the property) and "val forces MAE".
    """

    run_dir: Path
    epoch: np.ndarray
    time: np.ndarray | None
    series: dict[str, np.ndarray] = field(default_factory=dict)


def metrics_files(run_dir: str | os.PathLike) -> list[Path]:
    """``logs/version_k/metrics.csv`` files of a run folder, oldest version first."""
    logs = Path(run_dir) / "logs"
    found = [(int(m.group(1)), p / "metrics.csv") for p in logs.glob("version_*") if (m := _VERSION.fullmatch(p.name))]
    return [path for _, path in sorted(found) if path.is_file()]


def _per_epoch(files: list[Path]) -> dict[int, dict[str, float]]:
    table: dict[int, dict[str, float]] = {}
    for path in files:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                if not row.get("epoch"):
                    continue
                values = table.setdefault(int(float(row["epoch"])), {})
                values.update({k: float(v) for k, v in row.items() if k and v not in (None, "")})
    return table


def _target_mae_column(columns: set[str]) -> str | None:
    """``val_<target>_mae`` in the training units (not forces, not the ``_mae_meV`` copies)."""
    names = sorted(c for c in columns if c.startswith("val_") and c.endswith("_mae") and c != VAL_FORCES)
    return names[0] if names else None


def read_learning_curves(run_dir: str | os.PathLike) -> LearningCurves:
    """The learning curves of ``run_dir`` (finished or still running).

    Raises:
        ValueError: the folder has no ``logs/version_k/metrics.csv`` with a completed epoch.
    """
    run_dir = Path(run_dir)
    table = _per_epoch(metrics_files(run_dir))
    if not table:
        raise ValueError(f"{run_dir}: no logs/version_k/metrics.csv with a completed epoch (not a visnet fit run?)")
    epochs = sorted(table)
    columns = set().union(*table.values())

    def column(name: str) -> np.ndarray:
        return np.array([table[e].get(name, np.nan) for e in epochs])

    names = {"train loss": TRAIN_LOSS, "val loss": VAL_LOSS}
    target = _target_mae_column(columns)
    if target is not None:
        names[f"val {target.removeprefix('val_').removesuffix('_mae')} MAE"] = target
    names["val forces MAE"] = VAL_FORCES
    series = {label: column(name) for label, name in names.items() if name in columns}
    time = column(TIME_COLUMN) if TIME_COLUMN in columns else None
    return LearningCurves(run_dir, np.asarray(epochs) + 1, time, series)
