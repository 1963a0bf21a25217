"""PNG plots of an MD run: total and potential energy (with the committee's force std when there
is one), and temperature, against time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_energy", "plot_temperature"]


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def plot_energy(
    time: np.ndarray,
    total: np.ndarray,
    potential: np.ndarray,
    path: Path,
    title: str = "",
    force_std: tuple[np.ndarray, np.ndarray] | None = None,
    threshold: float | None = None,
) -> Path:
    """Total and potential energy (eV, shifted by the first total energy) vs time (ps).

    Args:
        force_std: (time ps, max force std eV/Å) of a committee run: drawn in a panel below, with
            ``threshold`` (eV/Å) as a dashed line.
    """
    fig = Figure(figsize=(6.4, 4.0 if force_std is None else 6.0))
    ax = fig.add_subplot(1 if force_std is None else 2, 1, 1)
    ref = total[0] if len(total) else 0.0
    ax.plot(time, total - ref, label="total", lw=1.2)
    ax.plot(time, potential - ref, label="potential", lw=1.0, alpha=0.8)
    ax.set_xlabel("time (ps)")
    ax.set_ylabel(f"energy − {ref:.4f} (eV)")
    ax.set_title(title)
    ax.legend()
    if force_std is not None:
        _plot_force_std(fig.add_subplot(2, 1, 2, sharex=ax), *force_std, threshold)
    return _save(fig, path)


def _plot_force_std(ax, time: np.ndarray, values: np.ndarray, threshold: float | None) -> None:
    ax.plot(time, values, lw=1.0, color="C2", label="max force std")
    if threshold is not None:
        ax.axhline(threshold, color="k", ls="--", lw=1.0, label=f"threshold {threshold:g} eV/Å")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("committee max force std (eV/Å)")
    ax.legend()


def plot_temperature(
    time: np.ndarray, temperature: np.ndarray, path: Path, target: float | None = None, title: str = ""
) -> Path:
    """Instantaneous temperature (K) vs time (ps), with the target as a dashed line."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    ax.plot(time, temperature, lw=1.0, label="instantaneous")
    if len(temperature):
        ax.axhline(float(np.mean(temperature)), color="C1", lw=1.0, label=f"mean {np.mean(temperature):.0f} K")
    if target is not None:
        ax.axhline(target, color="k", ls="--", lw=1.0, label=f"target {target:.0f} K")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("temperature (K)")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)
