"""Periodic images: cell heights, non-singular search cells (slabs, wires), wrapping into the cell."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from visnet.neighbors.systems import Systems

__all__ = ["cell_heights", "search_cells", "times_cell", "wrap"]


def cell_heights(cell: Tensor) -> Tensor:
    """(G, 3) perpendicular heights: volume / area of the face spanned by the other two rows."""
    volume = torch.linalg.det(cell).abs()
    areas = torch.stack(
        [torch.linalg.cross(cell[:, (k + 1) % 3], cell[:, (k + 2) % 3]).norm(dim=-1) for k in range(3)],
        dim=1,
    )
    return volume[:, None] / areas.clamp_min(torch.finfo(torch.float64).tiny)


def _is_singular(cell: Tensor) -> Tensor:
    scale = cell.norm(dim=-1).prod(dim=-1)
    return torch.linalg.det(cell).abs() <= 1e-10 * scale.clamp_min(1e-300)


def search_cells(cell: Tensor, pbc: Tensor) -> Tensor:
    """Non-singular (G, 3, 3) cells used for the search.

    Graphs without pbc get the identity (fractional = Cartesian coordinates). Non-periodic rows
    that make the cell singular (e.g. a slab given with a zero third vector) are replaced by unit
    normals; they never appear in the returned offsets, which are zero along those directions.
    """
    periodic = pbc.any(dim=1)
    eye = torch.eye(3, dtype=cell.dtype, device=cell.device).expand_as(cell)
    out = torch.where(periodic[:, None, None], cell, eye).clone()
    mixed = periodic & ~pbc.all(dim=1) & _is_singular(out)
    for g in mixed.nonzero().flatten().tolist():
        out[g] = _complete_rows(out[g], pbc[g])
    bad = periodic & _is_singular(out)
    if bool(bad.any()):
        g = int(bad.nonzero()[0, 0])
        raise ValueError(f"cell of graph {g} is singular along its periodic directions")
    return out


def _unit(v: Tensor) -> Tensor:
    return v / v.norm().clamp_min(1e-300)


def _complete_rows(cell: Tensor, pbc: Tensor) -> Tensor:
    cell = cell.clone()
    rows = pbc.nonzero().flatten().tolist()
    free = (~pbc).nonzero().flatten().tolist()
    if len(rows) == 2:
        cell[free[0]] = _unit(torch.linalg.cross(cell[rows[0]], cell[rows[1]]))
        return cell
    a = cell[rows[0]]
    axis = torch.zeros_like(a)
    axis[int(a.abs().argmin())] = 1.0
    u1 = _unit(torch.linalg.cross(a, axis))
    cell[free[0]], cell[free[1]] = u1, _unit(torch.linalg.cross(a, u1))
    return cell


def wrap(systems: Systems) -> tuple[Tensor, Tensor, Tensor]:
    """Wrap atoms into the cell along periodic directions.

    Returns wrapped positions (N, 3) Å, wrapped fractional coordinates (N, 3) and the integer
    wrap counts (N, 3) int64, with ``pos = pos_wrapped + wraps @ cell``.
    """
    periodic = systems.pbc[systems.batch]
    wraps = torch.where(periodic, systems.frac.floor(), torch.zeros_like(systems.frac))
    frac = systems.frac - wraps
    pos = systems.pos - times_cell(wraps, systems.cell[systems.batch])
    return pos, frac, wraps.long()


def times_cell(n: Tensor, cell: Tensor) -> Tensor:
    """Row vectors (..., 3) times matching cells (..., 3, 3), as three broadcast FMAs."""
    return n[..., 0:1] * cell[..., 0, :] + n[..., 1:2] * cell[..., 1, :] + n[..., 2:3] * cell[..., 2, :]
