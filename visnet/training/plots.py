"""Parity plots (prediction vs reference) written as PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visnet.atomic import atomic_open


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
