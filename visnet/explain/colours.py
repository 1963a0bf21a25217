"""One colour scale per explanation, shared by the 2D depiction, the 3D page and the heat map."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ColourScale", "colour_scale"]


@dataclass(frozen=True)
class ColourScale:
    """Values in [vmin, vmax] → colours of a matplotlib colour map.

    Attributes:
        cmap: matplotlib colour map name ("coolwarm": signed values, white at zero; "viridis": non-negative).
        vmin, vmax: the ends of the scale (symmetric about zero for signed values).
        label: the colour bar's caption, with the unit; lines separated by "\\n".
    """

    cmap: str
    vmin: float
    vmax: float
    label: str

    def rgb(self, values: np.ndarray) -> np.ndarray:
        """(..., 3) RGB in [0, 1] of ``values`` (...,), clipped to the scale."""
        from matplotlib import colormaps

        span = self.vmax - self.vmin
        fraction = np.clip((np.asarray(values, dtype=float) - self.vmin) / (span if span > 0 else 1.0), 0.0, 1.0)
        return np.asarray(colormaps[self.cmap](fraction))[..., :3]

    def hex(self, values: np.ndarray) -> list[str]:
        """Hex colour strings ("#rrggbb") of each value of the flat ``values``."""
        return ["#" + "".join(f"{round(255 * c):02x}" for c in rgb) for rgb in self.rgb(np.ravel(values))]

    def ticks(self, count: int = 5) -> list[float]:
        """``count`` evenly spaced values from vmin to vmax (the colour bar's labels)."""
        return np.linspace(self.vmin, self.vmax, count).tolist()


def colour_scale(values: np.ndarray, label: str) -> ColourScale:
    """The scale for ``values`` (any shape, finite): diverging and symmetric about zero when any value
    is negative, sequential from zero otherwise (uncertainties)."""
    values = np.asarray(values, dtype=float)
    top = float(np.abs(values).max()) if values.size else 0.0
    top = top if top > 0 else 1.0
    if (values < 0).any():
        return ColourScale("coolwarm", -top, top, label)
    return ColourScale("viridis", 0.0, top, label)
