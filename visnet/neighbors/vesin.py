"""The vesin back end: the optional ``vesin`` C++ neighbour list (CPU, one graph at a time)."""

from __future__ import annotations

import torch
from torch import Tensor

from visnet.neighbors.cell_list import cell_list_search
from visnet.neighbors.edges import cat_edges, sort_edges
from visnet.neighbors.periodic import wrap
from visnet.neighbors.systems import Systems

__all__ = ["vesin_available", "vesin_search"]

# vesin (0.6) dies with SIGFPE once its bounding box holds more than ~10^5 cutoff-sized cells and
# one direction is thin; such sparse graphs are searched with the cell list instead (same edges).
_VESIN_MAX_CELLS = 50_000


def vesin_available() -> bool:
    try:
        import vesin  # noqa: F401
    except ImportError:
        return False
    return True


def vesin_search(systems: Systems, cutoff: float) -> tuple[Tensor, Tensor, Tensor]:
    """One vesin call per graph on wrapped positions (CPU, float64)."""
    try:
        from vesin import NeighborList as VesinNeighborList
    except ImportError as error:
        raise ValueError("method='vesin' needs the optional 'vesin' package") from error
    if _vesin_cells(systems, cutoff) > _VESIN_MAX_CELLS:
        return cell_list_search(systems, cutoff)
    device = systems.pos.device
    pos, _, wraps = wrap(systems)
    pos_np, cell_np = pos.cpu().numpy(), systems.cell.cpu().numpy()
    ptr, pbc = systems.ptr.tolist(), systems.pbc.cpu().tolist()
    search = VesinNeighborList(cutoff=cutoff, full_list=True, n_threads=torch.get_num_threads())
    parts = []
    for g in range(len(ptr) - 1):
        if ptr[g + 1] - ptr[g] < 1:
            continue
        box = cell_np[g] if any(pbc[g]) else 0.0 * cell_np[g]
        i, j, s = search.compute(pos_np[ptr[g] : ptr[g + 1]], box, pbc[g], quantities="ijS")
        parts.append(_vesin_edges(i, j, s, ptr[g], device))
    i, j, s = cat_edges(parts, device)
    return sort_edges(i, j, s - wraps[j] + wraps[i], systems.num_atoms)


def _vesin_cells(systems: Systems, cutoff: float) -> float:
    """Most cutoff-sized cells vesin would make for one graph (cell heights along periodic
    directions, the atoms' extent along the others)."""
    if systems.num_atoms == 0:
        return 0.0
    idx = systems.batch[:, None].expand(-1, 3)
    inf = torch.full_like(systems.heights, float("inf"))
    low = inf.scatter_reduce(0, idx, systems.pos, "amin", include_self=True)
    high = (-inf).scatter_reduce(0, idx, systems.pos, "amax", include_self=True)
    extent = torch.where(systems.pbc, systems.heights, (high - low).nan_to_num(0.0, 0.0, 0.0))
    return float((extent / cutoff).floor().clamp_min(1).prod(dim=1).max())


def _vesin_edges(i, j, shifts, first: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    as_long = lambda a: torch.from_numpy(a.astype("int64")).to(device)  # noqa: E731
    return as_long(i) + first, as_long(j) + first, as_long(shifts).reshape(-1, 3)
