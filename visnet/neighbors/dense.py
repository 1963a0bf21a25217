"""The dense back end: all pairs of every graph, at the nearest image (best for small graphs)."""

from __future__ import annotations

import torch
from torch import Tensor

from visnet.neighbors.blocks import BlockPairs, OrderedAtoms, compare_blocks
from visnet.neighbors.edges import expand, sort_edges, stencil_offsets
from visnet.neighbors.systems import Systems

__all__ = ["dense_search"]


def dense_search(systems: Systems, cutoff: float) -> tuple[Tensor, Tensor, Tensor]:
    """Every graph against itself, each pair at its nearest image (plus more for small cells).

    Along periodic directions the nearest image in fractional coordinates is used; ``radius``
    extra images either side are needed only when the cell height is below twice the cutoff.
    Offsets are computed on the input positions, so no wrapping is needed.
    """
    device = systems.pos.device
    sizes = systems.sizes
    ratio = cutoff / systems.heights
    radius = torch.where(systems.pbc, torch.ceil(ratio + 0.5) - 1, torch.zeros_like(ratio)).long()
    graph, image = expand((2 * radius + 1).prod(dim=1))
    pairs = BlockPairs(
        a_start=systems.ptr[graph],
        a_len=sizes[graph],
        b_start=systems.ptr[graph],
        b_len=sizes[graph],
        shift=stencil_offsets(image, radius[graph]),
        nearest=systems.pbc[graph],
        graph=graph,
    )
    atoms = OrderedAtoms(systems.pos, systems.frac, torch.arange(systems.num_atoms, device=device))
    i, j, shifts = compare_blocks(atoms, pairs, systems.cell, cutoff)
    return sort_edges(i, j, shifts, systems.num_atoms)
