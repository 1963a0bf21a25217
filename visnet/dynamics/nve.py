"""NVE energy-conservation check: drift of the total energy in eV/atom/ps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MIN_DRIFT_SAMPLES", "NVEDrift", "nve_drift"]

MIN_DRIFT_SAMPLES = 3  # a line through fewer points has no residual to judge it by


@dataclass(frozen=True)
class NVEDrift:
    """Energy conservation of an NVE run.

    Attributes:
        drift: slope of a least-squares line through E_tot(t), eV/atom/ps.
        fluctuation: standard deviation of E_tot about that line, eV/atom.
        max_deviation: largest |E_tot(t) − E_tot(0)|, eV/atom.
        duration: ps; samples: number of E_tot values used.
    """

    drift: float
    fluctuation: float
    max_deviation: float
    duration: float
    samples: int

    def report(self) -> str:
        """One line for humans."""
        return (
            f"NVE drift {self.drift:+.3e} eV/atom/ps (linear fit over {self.duration:.4g} ps, {self.samples} samples); "
            f"fluctuation {self.fluctuation:.3e} eV/atom; max |E(t) - E(0)| {self.max_deviation:.3e} eV/atom"
        )


def nve_drift(time: np.ndarray, total: np.ndarray, num_atoms: int) -> NVEDrift:
    """Fit E_tot(t) / num_atoms with a line.

    Args:
        time: (T,) ps. total: (T,) total energy, eV. num_atoms: atoms in the system.

    Raises:
        ValueError: fewer than 3 samples or no elapsed time.
    """
    time, per_atom = np.asarray(time, dtype=float), np.asarray(total, dtype=float) / num_atoms
    if len(time) < MIN_DRIFT_SAMPLES or time[-1] <= time[0]:
        raise ValueError(
            f"need at least {MIN_DRIFT_SAMPLES} samples over a positive time span for a drift, got {len(time)}"
        )
    slope, intercept = np.polyfit(time, per_atom, 1)
    residual = per_atom - (slope * time + intercept)
    return NVEDrift(
        drift=float(slope),
        fluctuation=float(residual.std()),
        max_deviation=float(np.abs(per_atom - per_atom[0]).max()),
        duration=float(time[-1] - time[0]),
        samples=len(time),
    )
