"""``radius_graph`` and ``NeighborList``: radius graphs in plain torch, with periodic boundary conditions.

Three interchangeable back ends return identical edge sets in the same order:

* ``"dense"``: all pairs of every graph, enumerated in bounded chunks (best for small graphs);
* ``"cell_list"``: atoms binned into cells of side >= cutoff, linear in the number of atoms;
* ``"vesin"``: the optional ``vesin`` C++ neighbour list (CPU, one graph at a time).

Conventions (shared with the model): ``edge_index[0]`` is the neighbour ``j`` (source),
``edge_index[1]`` the centre ``i`` (target), and the edge vector is
``pos[j] + cell_offsets @ cell[batch[i]] - pos[i]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from visnet.neighbors.cell_list import cell_list_search
from visnet.neighbors.checks import check_cutoff, check_image_count, check_pos
from visnet.neighbors.dense import dense_search
from visnet.neighbors.prepare import prepare_systems
from visnet.neighbors.systems import Systems
from visnet.neighbors.vesin import vesin_available, vesin_search

__all__ = ["AUTO_DENSE_MAX_ATOMS", "NeighborList", "radius_graph"]

# Largest graph (atoms) for which method="auto" uses the dense search; measured on one CPU
# thread: dense and cell_list cost the same near 500 atoms (water density, 5 Å cutoff).
AUTO_DENSE_MAX_ATOMS = 512
_METHODS = ("auto", "dense", "cell_list", "vesin")


@dataclass
class NeighborList:
    """Edges of a radius graph.

    Attributes:
        edge_index: (2, num_edges) int64; row 0 is the neighbour ``j`` (source), row 1 the
            centre ``i`` (target). Sorted by (i, j, cell_offsets); self loops, when requested,
            come last, one per atom in atom order.
        cell_offsets: (num_edges, 3), dtype of ``pos``; integer image counts ``n`` such that the
            edge vector is ``pos[j] + n @ cell[batch[i]] - pos[i]`` (Å). All zeros without pbc.
    """

    edge_index: Tensor
    cell_offsets: Tensor

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]


def radius_graph(
    pos: Tensor,
    cutoff: float,
    batch: Tensor | None = None,
    cell: Tensor | None = None,
    pbc: Tensor | None = None,
    self_loops: bool = False,
    method: str = "auto",
) -> NeighborList:
    """All ordered pairs of atoms closer than ``cutoff`` within the same graph.

    Args:
        pos: (num_atoms, 3) float32/float64 positions in Å; need not be wrapped into the cell.
        cutoff: radius in Å; pairs with distance strictly below it are edges.
        batch: (num_atoms,) int64 graph index, sorted non-decreasing; None means one graph.
        cell: (num_graphs, 3, 3) or (3, 3) lattice vectors as rows (Å), or None.
            Graphs without periodic directions may have a zero cell.
        pbc: (num_graphs, 3), (3,) or () bool periodic directions; None means all periodic when
            ``cell`` is given and none otherwise.
        self_loops: append one (i, i, 0) edge per atom.
        method: "dense", "cell_list", "vesin" (needs the ``vesin`` package) or "auto"
            (dense when every graph has at most ``AUTO_DENSE_MAX_ATOMS`` atoms, otherwise
            vesin on CPU when installed, otherwise cell_list).

    Returns:
        NeighborList with ``edge_index`` (2, E) int64 and ``cell_offsets`` (E, 3). Periodic
        images of an atom itself, (i, i, n != 0), are edges. Neighbours are never truncated.
        Indices are computed without autograd.

    Raises:
        ValueError: on malformed input (shapes, non-finite positions, unsorted batch,
            non-positive cutoff, singular periodic cell, pbc without cell, unknown method), or a
            periodic cell so thin that an atom would have more than ``MAX_PERIODIC_IMAGES``
            images within the cutoff.
    """
    check_pos(pos)
    cutoff = check_cutoff(cutoff)
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {_METHODS}")
    with torch.no_grad():
        systems = prepare_systems(pos, batch, cell, pbc)
        check_image_count(systems, cutoff)
        method = _resolve_method(method, systems)
        i, j, shifts = _SEARCHES[method](systems, cutoff)
        if self_loops:
            loops = torch.arange(systems.num_atoms, device=pos.device)
            i, j = torch.cat([i, loops]), torch.cat([j, loops])
            shifts = torch.cat([shifts, shifts.new_zeros(systems.num_atoms, 3)])
        return NeighborList(torch.stack([j, i]), shifts.to(pos.dtype))


def _resolve_method(method: str, systems: Systems) -> str:
    if method != "auto":
        return method
    largest = int(systems.sizes.max()) if systems.sizes.numel() else 0
    if largest <= AUTO_DENSE_MAX_ATOMS:
        return "dense"
    if systems.pos.device.type == "cpu" and vesin_available():
        return "vesin"
    return "cell_list"


_SEARCHES = {"dense": dense_search, "cell_list": cell_list_search, "vesin": vesin_search}
