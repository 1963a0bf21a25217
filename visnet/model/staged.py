"""Staged radius graphs: a call that needs the outputs of some atoms only (a domain of a larger system).

ViSNet's stages are the neighbour embedding (stage 0) and its ``num_layers`` ViS-MP layers (stage k,
which also uses the edge features of the edge embedding for k = 1). An atom's output after the last
layer reads its incoming edges there, its neighbours' features after layer ``num_layers - 1``, and
so on down: stage k is needed only on the edges whose centre atom is at most ``num_layers - k``
hops (edges) from a target atom, and atoms further than ``num_layers + 1`` hops take no part at all.
``stage_neighbors`` sorts the edges by their centre's hop count, so that stage k runs on a prefix
of the edges (``StagedNeighborList.stage_edges[k]`` of them): the targets' outputs are those of
the whole graph, bit for bit, at a fraction of the work (the outer atoms' outputs are not).

On a slab of a long box with a ghost shell of (num_layers + 1) x cutoff on both sides (the LAMMPS
domain mode), the three layers of the bundled model run on ~90, ~86 and ~83 % of the shell's edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from visnet.neighbors import NeighborList

__all__ = ["StagedNeighborList", "message_hops", "stage_neighbors"]


@dataclass
class StagedNeighborList(NeighborList):
    """A radius graph (with self-loops) whose edges are sorted by their centre atom's hop count from
    the first ``targets`` atoms, for a call whose only exact outputs are those atoms' (per-atom
    outputs of the others, and any sum over all atoms, are not the whole graph's).

    Attributes:
        edge_index: (2, E) int64, row 0 the neighbour j, row 1 the centre i, sorted by hops of i.
        cell_offsets: (E, 3) integer image offsets (as ``NeighborList``).
        targets: the first ``targets`` atoms are the ones whose outputs are wanted.
        stage_edges: (num_layers + 1,) edges each stage needs, a prefix of ``edge_index``: stage 0
            (neighbour embedding) those whose centre is at most ``num_layers`` hops from a target,
            stage k (ViS-MP layer k; the edge embedding takes stage 1's) at most ``num_layers - k``.
    """

    targets: int = 0
    stage_edges: tuple[int, ...] = ()


def message_hops(edge_index: Tensor, num_atoms: int, targets: int, depth: int) -> Tensor:
    """(num_atoms,) int64 fewest edges from each atom to one of the first ``targets`` atoms, capped at
    ``depth + 1`` (further, or not connected). ``edge_index`` (2, E) of a symmetric radius graph."""
    hops = torch.full((num_atoms,), depth + 1, dtype=torch.long, device=edge_index.device)
    hops[:targets] = 0
    src, dst = edge_index[0], edge_index[1]
    for hop in range(1, depth + 1):
        reached = dst[hops.index_select(0, src) == hop - 1]
        hops[reached] = torch.clamp(hops[reached], max=hop)
    return hops


def stage_neighbors(neighbors: NeighborList, num_atoms: int, targets: int, num_layers: int) -> StagedNeighborList:
    """``neighbors`` (a radius graph with self-loops of ``num_atoms`` atoms) staged for a call that
    needs the outputs of its first ``targets`` atoms only, through ``num_layers`` ViS-MP layers.

    Raises:
        ValueError: ``targets`` outside 0..num_atoms, or ``num_layers`` < 1.
    """
    if not 0 <= targets <= num_atoms:
        raise ValueError(f"targets must be between 0 and the {num_atoms} atoms, got {targets}")
    if num_layers < 1:
        raise ValueError(f"num_layers must be at least 1, got {num_layers}")
    centre_hops = message_hops(neighbors.edge_index, num_atoms, targets, num_layers).index_select(
        0, neighbors.edge_index[1]
    )
    order = torch.argsort(centre_hops, stable=True)
    counts = torch.bincount(centre_hops, minlength=num_layers + 2).cumsum(0)
    stage_edges = tuple(int(counts[num_layers - k]) for k in range(num_layers + 1))
    return StagedNeighborList(
        neighbors.edge_index[:, order], neighbors.cell_offsets[order], targets=targets, stage_edges=stage_edges
    )
