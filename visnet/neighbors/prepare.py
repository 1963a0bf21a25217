"""``prepare_systems``: the checked batch, cells and periodic flags of a neighbour search as ``Systems``."""

from __future__ import annotations

import torch
from torch import Tensor

from visnet.neighbors.checks import check_batch, check_cell, check_pbc
from visnet.neighbors.periodic import cell_heights, search_cells, times_cell
from visnet.neighbors.systems import Systems

__all__ = ["prepare_systems"]


def _num_graphs(batch: Tensor, cell: Tensor | None, pbc: Tensor | None) -> int:
    """Graph count from a batched cell/pbc when given (allows empty trailing graphs), else batch."""
    from_batch = int(batch[-1]) + 1 if batch.numel() else 1
    given = [int(v.shape[0]) for v, dim in ((cell, 3), (pbc, 2)) if getattr(v, "ndim", None) == dim]
    if not given:
        return from_batch
    if len(set(given)) > 1:
        raise ValueError(f"cell describes {given[0]} graphs but pbc describes {given[1]}")
    if from_batch > given[0]:
        raise ValueError(f"batch refers to graph {from_batch - 1} but only {given[0]} cells/pbc given")
    return given[0]


def prepare_systems(pos: Tensor, batch: Tensor | None, cell: Tensor | None, pbc: Tensor | None) -> Systems:
    """Check ``batch``, ``cell`` and ``pbc`` and return the batch's ``Systems`` (float64)."""
    device = pos.device
    batch = check_batch(batch, pos.shape[0], device)
    num_graphs = _num_graphs(batch, cell, pbc)
    pbc_t = check_pbc(pbc, cell is not None, num_graphs, device)
    if cell is None:
        cell_t = torch.zeros(num_graphs, 3, 3, dtype=torch.float64, device=device)
    else:
        cell_t = check_cell(cell, num_graphs, device)
    search_cell = search_cells(cell_t, pbc_t)
    counts = torch.bincount(batch, minlength=num_graphs)
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    pos64 = pos.detach().to(torch.float64)
    frac = times_cell(pos64, torch.linalg.inv(search_cell)[batch])
    return Systems(pos64, batch, ptr, search_cell, pbc_t.clone(), cell_heights(search_cell), frac)
