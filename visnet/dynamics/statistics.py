"""Temperature statistics of a thermostatted run: mean, spread and the error of the mean.

The instantaneous temperature of a canonical system with N_f degrees of freedom fluctuates with
standard deviation T·sqrt(2/N_f) (kinetic energy ~ chi-squared with N_f degrees of freedom), and
successive samples are correlated over the thermostat's time, so the error of the mean comes from
block averages, not from std/sqrt(samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

__all__ = ["TemperatureStats", "degrees_of_freedom", "temperature_stats"]


@dataclass(frozen=True)
class TemperatureStats:
    """Temperature over (the production part of) a run.

    Attributes:
        mean: K. std: spread of the instantaneous temperature, K.
        error: standard error of the mean from block averages, K (NaN with fewer than 2 blocks).
        samples: temperatures used. duration: ps they span.
    """

    mean: float
    std: float
    error: float
    samples: int
    duration: float

    def report(self, target: float | None = None, dof: int | None = None) -> str:
        """One line for humans; with ``target`` and ``dof`` also the canonical spread T·sqrt(2/N_f)."""
        line = (
            f"mean temperature {self.mean:.1f} ± {self.error:.1f} K over {self.duration:.3g} ps (std {self.std:.1f} K"
        )
        if target is not None and dof:
            line += f"; canonical at {target:.0f} K with {dof} degrees of freedom: {target * np.sqrt(2.0 / dof):.1f} K"
        return line + ")"


def degrees_of_freedom(atoms: Atoms) -> int:
    """3N minus what the constraints remove (as ``Atoms.get_temperature`` counts them)."""
    return 3 * len(atoms) - int(sum(c.get_removed_dof(atoms) for c in atoms.constraints))


def temperature_stats(time: np.ndarray, temperature: np.ndarray, blocks: int = 10) -> TemperatureStats:
    """Mean, spread and block-average error of ``temperature``.

    Args:
        time: (T,) ps. temperature: (T,) K, equally spaced samples.
        blocks: number of contiguous blocks for the error of the mean (fewer when samples are few).

    Raises:
        ValueError: no samples.
    """
    time, temperature = np.asarray(time, dtype=float), np.asarray(temperature, dtype=float)
    if temperature.size == 0:
        raise ValueError("no temperature samples")
    n_blocks = min(blocks, temperature.size)
    means = [b.mean() for b in np.array_split(temperature, n_blocks)]
    error = float(np.std(means, ddof=1) / np.sqrt(n_blocks)) if n_blocks > 1 else float("nan")
    return TemperatureStats(
        mean=float(temperature.mean()),
        std=float(temperature.std()),
        error=error,
        samples=int(temperature.size),
        duration=float(time[-1] - time[0]) if time.size else 0.0,
    )
