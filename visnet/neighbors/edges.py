"""Edge-array helpers shared by the back ends: sorting, concatenation, stencils, expansion."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["cat_edges", "empty_edges", "expand", "sort_edges", "stencil_offsets"]


def sort_edges(i: Tensor, j: Tensor, shifts: Tensor, num_atoms: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sort edges lexicographically by (i, j, shift_x, shift_y, shift_z)."""
    if i.numel() == 0:
        return i, j, shifts
    low = shifts.amin(dim=0)
    base = int((shifts.amax(dim=0) - low).max()) + 1
    if num_atoms**2 * base**3 < 2**62:
        code = shifts - low
        key = (i * num_atoms + j) * base**3 + (code[:, 0] * base + code[:, 1]) * base + code[:, 2]
        order = torch.argsort(key)
    else:  # key would overflow int64: stable sorts from the least significant column
        order = torch.arange(i.numel(), device=i.device)
        for column in (shifts[:, 2], shifts[:, 1], shifts[:, 0], j, i):
            order = order[torch.sort(column[order], stable=True).indices]
    return i[order], j[order], shifts[order]


def empty_edges(device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    idx = torch.empty(0, dtype=torch.long, device=device)
    return idx, idx.clone(), torch.empty(0, 3, dtype=torch.long, device=device)


def cat_edges(parts: list[tuple[Tensor, Tensor, Tensor]], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    if not parts:
        return empty_edges(device)
    i, j, s = zip(*parts)
    return torch.cat(i), torch.cat(j), torch.cat(s)


def stencil_offsets(index: Tensor, radius: Tensor) -> Tensor:
    """Decompose a flat stencil index into (n, 3) offsets in [-radius, radius], x most significant."""
    width = 2 * radius + 1
    dz = index % width[:, 2]
    dy = torch.div(index, width[:, 2], rounding_mode="floor") % width[:, 1]
    dx = torch.div(index, width[:, 2] * width[:, 1], rounding_mode="floor")
    return torch.stack([dx, dy, dz], dim=1) - radius


def expand(counts: Tensor) -> tuple[Tensor, Tensor]:
    """For items with ``counts`` sub-items: (item of each sub-item, rank within its item)."""
    item = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
    first = counts.cumsum(0) - counts
    return item, torch.arange(item.numel(), device=counts.device) - first[item]
