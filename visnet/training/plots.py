"""PNG plots of training: parity plots (prediction vs reference) and learning curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visnet.files.atomic import atomic_open
from visnet.training.curves import LearningCurves, read_learning_curves

__all__ = ["CURVES_FILE", "parity_plot", "plot_learning_curves", "plot_run"]

CURVES_FILE = "learning_curves.png"


def parity_plot(reference: np.ndarray, predicted: np.ndarray, path: str | Path, title: str, unit: str) -> Path:
    """Scatter of predicted against reference values with the y = x line; written atomically.

    Args:
        reference, predicted: arrays of the same shape (flattened), in ``unit``.
        path: the PNG to write.
        title: plot title (quantity name).
        unit: axis unit label.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference, predicted = np.ravel(reference), np.ravel(predicted)
    mae = float(np.mean(np.abs(predicted - reference))) if reference.size else float("nan")
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.scatter(reference, predicted, s=4, alpha=0.5, linewidths=0)
    lo, hi = (0.0, 1.0)
    if reference.size:
        lo, hi = float(min(reference.min(), predicted.min())), float(max(reference.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
    ax.set_xlabel(f"reference ({unit})")
    ax.set_ylabel(f"predicted ({unit})")
    ax.set_title(f"{title}: MAE {mae:.4g} {unit} (n={reference.size})", fontsize=9)
    ax.set_aspect("equal", adjustable="datalim")
    fig.tight_layout()
    try:
        with atomic_open(path, suffix=".png") as handle:
            fig.savefig(handle, format="png")
    finally:
        plt.close(fig)
    path = Path(path)
    return path


def _axes_panel(ax, x: np.ndarray, curves: LearningCurves, labels: list[str], xlabel: str, ylabel: str) -> None:
    for label in labels:
        y = curves.series[label]
        keep = np.isfinite(x) & np.isfinite(y) & (y > 0)
        ax.plot(x[keep], y[keep], marker="." if keep.sum() < 30 else None, lw=1.2, label=label)
    ax.set_yscale("log")  # losses and errors fall over orders of magnitude
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def plot_learning_curves(curves: LearningCurves, path: str | Path) -> Path:
    """Train/validation loss and validation MAEs against epoch and (when logged) wall-clock time.

    Args:
        curves: the run's per-epoch series (``read_learning_curves``), in training units.
        path: the PNG to write (atomically).

    Layout: rows loss, MAE; columns epoch, wall-clock (minutes, or seconds for short runs); log y.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = [k for k in curves.series if k.endswith("loss")]
    errors = [k for k in curves.series if k.endswith("MAE")]
    rows = [(losses, "loss"), (errors, "MAE (training units)")]
    rows = [(labels, name) for labels, name in rows if labels]
    axes_x = [(curves.epoch.astype(float), "epoch")]
    if curves.time is not None and np.isfinite(curves.time).any():
        minutes = np.nanmax(curves.time) > 120.0
        axes_x.append((curves.time / 60.0 if minutes else curves.time, f"wall-clock ({'min' if minutes else 's'})"))
    fig, axes = plt.subplots(len(rows), len(axes_x), figsize=(5.0 * len(axes_x), 3.6 * len(rows)), dpi=110)
    axes = np.atleast_2d(np.asarray(axes).reshape(len(rows), len(axes_x)))
    for r, (labels, ylabel) in enumerate(rows):
        for c, (x, xlabel) in enumerate(axes_x):
            _axes_panel(axes[r, c], x, curves, labels, xlabel, ylabel)
    fig.suptitle(f"{curves.run_dir.name}: learning curves", fontsize=10)
    fig.tight_layout()
    try:
        with atomic_open(path, suffix=".png") as handle:
            fig.savefig(handle, format="png")
    finally:
        plt.close(fig)
    return Path(path)


def plot_run(run_dir: str | Path) -> Path | None:
    """Write ``run_dir/learning_curves.png`` from the run's metrics; None when nothing is logged yet."""
    try:
        curves = read_learning_curves(run_dir)
    except ValueError:
        return None
    return plot_learning_curves(curves, Path(run_dir) / CURVES_FILE)
