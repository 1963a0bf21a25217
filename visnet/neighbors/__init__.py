"""Radius graphs (neighbour lists) in plain torch, with periodic boundary conditions.

One back end per module: ``dense``, ``cell_list`` and ``vesin`` (identical edge sets in the same
order), sharing ``blocks`` (the distance kernel), ``edges`` (sorting), ``periodic`` (images,
search cells, wrapping), ``systems`` (the validated batch) and ``checks`` (input checks);
``api`` holds ``radius_graph`` and ``NeighborList``.
"""

from visnet.neighbors.api import AUTO_DENSE_MAX_ATOMS, NeighborList, radius_graph
from visnet.neighbors.checks import MAX_PERIODIC_IMAGES

__all__ = ["AUTO_DENSE_MAX_ATOMS", "MAX_PERIODIC_IMAGES", "NeighborList", "radius_graph"]
