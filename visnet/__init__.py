"""ViSNet: equivariant vector-scalar interactive message passing as a practical force field.

Public API (names fixed by DESIGN.md): ``ViSNet``, ``save_model``, ``load_model``, ``from_pyg``,
``radius_graph``, ``ViSNetCalculator``, ``predict`` (with ``Prediction``, ``results_to_table``,
``to_dataframe``, ``write_csv``, ``write_json``); compiled inference: ``compile_model``, ``export_model``
/ ``load_exported`` (AOTInductor ``.pt2`` packages).
"""

__version__ = "0.1.0"

from visnet.calculator import ViSNetCalculator
from visnet.checkpoint import from_pyg, load_model, save_model
from visnet.compile import compile_model
from visnet.export import export_model
from visnet.exported_model import load_exported
from visnet.model import ViSNet
from visnet.neighbors import NeighborList, radius_graph
from visnet.predict import predict
from visnet.results import Prediction, results_to_table, to_dataframe, write_csv, write_json

__all__ = [
    "NeighborList",
    "Prediction",
    "ViSNet",
    "ViSNetCalculator",
    "__version__",
    "compile_model",
    "export_model",
    "from_pyg",
    "load_exported",
    "load_model",
    "predict",
    "radius_graph",
    "results_to_table",
    "save_model",
    "to_dataframe",
    "write_csv",
    "write_json",
]
