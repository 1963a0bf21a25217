"""Per-atom values over a trajectory as a heat map (frames × atoms), matplotlib."""

from __future__ import annotations

import io

import numpy as np

from visnet.explain.colours import ColourScale

__all__ = ["heat_map"]


def heat_map(
    values: np.ndarray, frames: np.ndarray, symbols: list[str], scale: ColourScale, title: str, kind: str
) -> bytes:
    """The image (``kind`` "png" or "svg") of ``values`` (F, N): one row per frame (``frames`` (F,),
    the frame numbers of the input), one column per atom (labelled element + index)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    num_frames, num_atoms = values.shape
    fig, ax = plt.subplots(figsize=(min(16.0, 2.0 + 0.32 * num_atoms), min(10.0, 2.5 + 0.04 * num_frames)))
    try:
        image = ax.imshow(
            values, aspect="auto", interpolation="nearest", cmap=scale.cmap, vmin=scale.vmin, vmax=scale.vmax
        )
        ax.set_xticks(range(num_atoms), [f"{s}{i}" for i, s in enumerate(symbols)], rotation=90, fontsize=7)
        rows = np.unique(np.linspace(0, num_frames - 1, min(num_frames, 10)).round().astype(int))
        ax.set_yticks(rows, [str(frames[r]) for r in rows])
        ax.set_xlabel("atom")
        ax.set_ylabel("frame")
        ax.set_title(title)
        fig.colorbar(image, ax=ax, label=scale.label.replace("\n", " "))
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format=kind, dpi=120)
    finally:
        plt.close(fig)
    return buffer.getvalue()
