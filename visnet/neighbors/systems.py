"""The validated geometry of a batch (``Systems``), float64, as every back end searches it."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["Systems"]


@dataclass
class Systems:
    """Validated geometry of a batch, float64, on the device of ``pos``."""

    pos: Tensor  # (N, 3) Å
    batch: Tensor  # (N,) int64
    ptr: Tensor  # (G + 1,) first atom of each graph
    cell: Tensor  # (G, 3, 3) non-singular search cell (identity for graphs without pbc)
    pbc: Tensor  # (G, 3) bool
    heights: Tensor  # (G, 3) perpendicular heights of the search cell
    frac: Tensor  # (N, 3) fractional coordinates in the search cell (not wrapped)

    @property
    def num_atoms(self) -> int:
        return self.pos.shape[0]

    @property
    def sizes(self) -> Tensor:
        return self.ptr[1:] - self.ptr[:-1]
