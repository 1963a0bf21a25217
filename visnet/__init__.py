"""ViSNet: equivariant vector-scalar interactive message passing as a practical force field.

Public API: ``ViSNet``, ``save_model``, ``load_model``, ``from_pyg``,
``radius_graph``, ``ViSNetCalculator``, ``predict`` (with ``Prediction``, ``results_to_table``,
``to_dataframe``, ``write_csv``, ``write_json``), ``screen`` (``predict`` over collections too large
for memory: streamed, sharded, resumable, data-parallel); compiled inference: ``compile_model``, ``export_model``
/ ``load_exported`` (AOTInductor ``.pt2`` packages); ``learn`` (active learning: committee MD, labelling,
fine-tuning in rounds).
"""

__version__ = "0.1.0"

from visnet import _deprecated
from visnet.accel.compile import compile_model
from visnet.accel.export import export_model
from visnet.accel.exported import load_exported
from visnet.explain import Explanation, explain
from visnet.inference.calculator import ViSNetCalculator
from visnet.io.model_files import from_pyg, load_model, save_model
from visnet.learning import learn
from visnet.model import ViSNet
from visnet.neighbors import NeighborList, radius_graph
from visnet.prediction.predict import predict
from visnet.prediction.results import Prediction, results_to_table, to_dataframe, write_csv, write_json
from visnet.prediction.screen import ScreenSummary, screen

_deprecated.install()  # old module paths (before 0.2) keep importing, with a warning

__all__ = [
    "Explanation",
    "NeighborList",
    "Prediction",
    "ScreenSummary",
    "ViSNet",
    "ViSNetCalculator",
    "__version__",
    "compile_model",
    "explain",
    "export_model",
    "from_pyg",
    "load_exported",
    "learn",
    "load_model",
    "predict",
    "radius_graph",
    "results_to_table",
    "save_model",
    "screen",
    "to_dataframe",
    "write_csv",
    "write_json",
]
