"""Temperature statistics of a thermostatted run: mean, spread and the error of the mean.

The instantaneous temperature of a canonical system with N_f degrees of freedom fluctuates with
standard deviation T·sqrt(2/N_f) (kinetic energy ~ chi-squared with N_f degrees of freedom), and
successive samples are correlated over the thermostat's time, so the error of the mean is
std·sqrt(2 τ_int / samples) with τ_int the integrated autocorrelation time (in samples), summed up
to Sokal's self-consistent window (the first lag M >= 5 τ_int(M)), not std/sqrt(samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

__all__ = ["TemperatureStats", "degrees_of_freedom", "integrated_autocorrelation_time", "temperature_stats"]


@dataclass(frozen=True)
class TemperatureStats:
    """Temperature over (the production part of) a run.

    Attributes:
        mean: K. std: spread of the instantaneous temperature, K (0 for one sample).
        error: standard error of the mean, K, from the integrated autocorrelation time; None with
            fewer than 2 samples (one temperature has no spread to estimate an error from).
        correlation_time: integrated autocorrelation time, ps.
        samples: temperatures used. duration: ps they span.
    """

    mean: float
    std: float
    error: float | None
    correlation_time: float
    samples: int
    duration: float

    def report(self, target: float | None = None, dof: int | None = None) -> str:
        """One line for humans; with ``target`` and ``dof`` also the canonical spread T·sqrt(2/N_f).
        One sample (e.g. ``--steps 0``) is reported as that temperature, without mean or error."""
        if self.error is None:
            return f"temperature {self.mean:.1f} K (one sample: no mean or error; run more steps for statistics)"
        line = (
            f"mean temperature {self.mean:.1f} ± {self.error:.1f} K over {self.duration:.3g} ps (std {self.std:.1f} K"
        )
        if target is not None and dof:
            line += f"; canonical at {target:.0f} K with {dof} degrees of freedom: {target * np.sqrt(2.0 / dof):.1f} K"
        return line + ")"


def degrees_of_freedom(atoms: Atoms) -> int:
    """3N minus what the constraints remove (as ``Atoms.get_temperature`` counts them)."""
    return 3 * len(atoms) - int(sum(c.get_removed_dof(atoms) for c in atoms.constraints))


def integrated_autocorrelation_time(series: np.ndarray, window_factor: float = 5.0) -> float:
    """τ_int = 1/2 + Σ_{k=1}^{M} ρ(k) in samples, M the first lag with M >= window_factor·τ_int(M)
    (Sokal); 0.5 for uncorrelated samples, at least 0.5."""
    x = np.asarray(series, dtype=float) - np.mean(series)
    n = x.size
    if n < 2 or not np.any(x):
        return 0.5
    spectrum = np.fft.rfft(x, 2 * n)  # zero-padded: the linear, not circular, autocorrelation
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[:n]
    rho = acf / acf[0]
    taus = 0.5 + np.cumsum(rho[1:])
    lags = np.arange(1, n)
    window = np.flatnonzero(lags >= window_factor * taus)
    tau = taus[window[0]] if window.size else taus[-1]
    return float(max(tau, 0.5))


def temperature_stats(time: np.ndarray, temperature: np.ndarray) -> TemperatureStats:
    """Mean, spread and the statistical error of the mean of ``temperature``.

    Args:
        time: (T,) ps. temperature: (T,) K, equally spaced samples.

    Raises:
        ValueError: no samples.
    """
    time, temperature = np.asarray(time, dtype=float), np.asarray(temperature, dtype=float)
    n = temperature.size
    if n == 0:
        raise ValueError("no temperature samples")
    tau = integrated_autocorrelation_time(temperature)
    std = float(temperature.std())
    error = std * float(np.sqrt(2.0 * tau / n)) if n > 1 else None
    spacing = float(time[1] - time[0]) if n > 1 else 0.0
    return TemperatureStats(
        mean=float(temperature.mean()),
        std=std,
        error=error,
        correlation_time=tau * spacing,
        samples=int(n),
        duration=float(time[-1] - time[0]),
    )
