"""ViSNet: equivariant vector-scalar interactive message passing as a practical force field.

Public API (names fixed by DESIGN.md): ``ViSNet``, ``save_model``, ``load_model``, ``from_pyg``,
``radius_graph``, ``ViSNetCalculator``.
"""

__version__ = "0.1.0"

from visnet.calculator import ViSNetCalculator
from visnet.checkpoint import from_pyg, load_model, save_model
from visnet.model import ViSNet
from visnet.neighbors import NeighborList, radius_graph

__all__ = [
    "NeighborList", "ViSNet", "ViSNetCalculator", "__version__", "from_pyg", "load_model", "radius_graph", "save_model",
]
