"""The cell-list back end: atoms binned into cells of side >= cutoff, linear in the number of atoms."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from visnet.neighbors.blocks import BlockPairs, OrderedAtoms, compare_blocks
from visnet.neighbors.edges import empty_edges, expand, sort_edges, stencil_offsets
from visnet.neighbors.periodic import wrap
from visnet.neighbors.systems import Systems

__all__ = ["cell_list_search"]


@dataclass
class _Bins:
    """Binning of wrapped fractional coordinates: per graph (G, 3), per bin and per atom."""

    count: Tensor  # (G, 3) bins per direction
    radius: Tensor  # (G, 3) stencil half-width in bins
    offset: Tensor  # (G,) first global bin id of each graph
    order: Tensor  # (N,) atom indices sorted by global bin id
    start: Tensor  # (num_bins,) first position in ``order`` of each bin
    size: Tensor  # (num_bins,) atoms per bin
    graph: Tensor  # (num_bins,) graph of each bin
    coord: Tensor  # (num_bins, 3) integer coordinates of each bin


def _bin_counts(systems: Systems, frac: Tensor, cutoff: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per graph: bins per direction, lower corner and bin width (fractional units).

    Bins are at least ``cutoff`` thick (perpendicular), periodic directions span the cell and
    the others the extent of the atoms.
    """
    num_graphs, batch = systems.sizes.numel(), systems.batch
    inf = torch.full((num_graphs, 3), float("inf"), dtype=frac.dtype, device=frac.device)
    idx = batch[:, None].expand(-1, 3)
    low = inf.scatter_reduce(0, idx, frac, "amin", include_self=True)
    high = (-inf).scatter_reduce(0, idx, frac, "amax", include_self=True)
    low = torch.where(systems.pbc, torch.zeros_like(low), low.nan_to_num(0.0, 0.0, 0.0))
    high = torch.where(systems.pbc, torch.ones_like(high), high.nan_to_num(0.0, 0.0, 0.0))
    span = (high - low).clamp_min(0.0)
    count = torch.floor(span * systems.heights / cutoff).clamp_min(1)
    # Sparse systems (vacuum, clusters) would get far more bins than atoms: coarsen uniformly.
    count = _coarsen(count, (2 * systems.sizes + 64).to(count.dtype))
    width = torch.where(span > 0, span / count, torch.ones_like(span))
    return count, low, width


def _coarsen(count: Tensor, limit: Tensor) -> Tensor:
    """(G, 3) bin counts scaled down uniformly until each graph has about ``limit`` bins or fewer.

    Only directions with more than one bin shrink: a flat or linear system (one direction
    already at one bin) is coarsened along the others, never to more bins than ``limit``.
    """
    for _ in range(3):
        excess = (count.prod(dim=1) / limit).clamp_min(1.0)
        free = (count > 1).sum(dim=1).clamp_min(1).to(count.dtype)
        count = torch.floor(count / excess[:, None] ** (1.0 / free[:, None])).clamp_min(1)
    return count


def _bin_atoms(systems: Systems, frac: Tensor, cutoff: float) -> _Bins:
    count, low, width = _bin_counts(systems, frac, cutoff)
    thickness = width * systems.heights
    radius = torch.where(systems.pbc, torch.ceil(cutoff / thickness), (count > 1).to(count.dtype))
    count, radius, batch = count.long(), radius.long(), systems.batch
    coord = torch.floor((frac - low[batch]) / width[batch]).long()
    coord = torch.minimum(coord.clamp_min(0), count[batch] - 1)
    per_graph = count.prod(dim=1)
    offset = per_graph.cumsum(0) - per_graph
    gid = offset[batch] + _bin_linear(coord, count[batch])
    size = torch.bincount(gid, minlength=int(per_graph.sum()))
    graph, local = expand(per_graph)
    return _Bins(
        count=count,
        radius=radius,
        offset=offset,
        order=torch.argsort(gid, stable=True),
        start=size.cumsum(0) - size,
        size=size,
        graph=graph,
        coord=_bin_coords(local, count[graph]),
    )


def _bin_linear(coord: Tensor, count: Tensor) -> Tensor:
    return (coord[:, 0] * count[:, 1] + coord[:, 1]) * count[:, 2] + coord[:, 2]


def _bin_coords(linear: Tensor, count: Tensor) -> Tensor:
    z = linear % count[:, 2]
    y = torch.div(linear, count[:, 2], rounding_mode="floor") % count[:, 1]
    x = torch.div(linear, count[:, 2] * count[:, 1], rounding_mode="floor")
    return torch.stack([x, y, z], dim=1)


def cell_list_search(systems: Systems, cutoff: float) -> tuple[Tensor, Tensor, Tensor]:
    """Compare each bin with its neighbouring bins (27 for ordinary cells).

    Bins are at least ``cutoff`` thick, so neighbours lie at most ``radius`` bins away
    (radius > 1 only for cells thinner than the cutoff); periodic directions wrap around and
    record the image shift of the target bin.
    """
    device = systems.pos.device
    if systems.num_atoms == 0:
        return empty_edges(device)
    pos, frac, wraps = wrap(systems)
    bins = _bin_atoms(systems, frac, cutoff)
    occupied = (bins.size > 0).nonzero().flatten()
    stencil = (2 * bins.radius + 1).prod(dim=1)[bins.graph[occupied]]
    source, step = expand(stencil)
    source = occupied[source]
    graph = bins.graph[source]
    target, shift, valid = _target_bins(
        systems.pbc[graph], bins.coord[source] + stencil_offsets(step, bins.radius[graph]), bins.count[graph]
    )
    target = bins.offset[graph] + _bin_linear(target, bins.count[graph])
    pairs = BlockPairs(
        a_start=bins.start[source],
        a_len=bins.size[source],
        b_start=bins.start[target],
        b_len=torch.where(valid, bins.size[target], 0),
        shift=shift,
        nearest=torch.zeros_like(shift, dtype=torch.bool),
        graph=graph,
    )
    atoms = OrderedAtoms(pos[bins.order], frac[bins.order], bins.order)
    i, j, shifts = compare_blocks(atoms, pairs, systems.cell, cutoff)
    return sort_edges(i, j, shifts - wraps[j] + wraps[i], systems.num_atoms)


def _target_bins(periodic: Tensor, target: Tensor, count: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Wrap target bins along periodic directions; flag out-of-range ones elsewhere."""
    shift = torch.div(target, count, rounding_mode="floor")
    shift = torch.where(periodic, shift, torch.zeros_like(shift))
    target = target - shift * count
    valid = ((target >= 0) & (target < count)).all(dim=1)
    return target.clamp(min=0).minimum(count - 1), shift, valid
