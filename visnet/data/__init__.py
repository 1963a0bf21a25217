"""Data: readers (MD17/rMD17 npz, QM9 npz, ASE files), units, caching, splits, statistics,
the torch dataset with its collate function, and the Lightning data module.

``ViSNetDataModule`` imports Lightning and is loaded on first access, so ``import visnet.data``
(and every inference path) stays free of Lightning.
"""

from importlib import import_module
from typing import Any

from visnet.data.dataset import AtomsDataset, collate
from visnet.data.loading import convert_units, detect_format, load_atoms_data
from visnet.data.qm9 import QM9_TARGETS, head_for_target, is_extensive
from visnet.data.splits import load_or_make_splits, make_splits, read_splits
from visnet.data.statistics import Statistics, compute_statistics
from visnet.data.structures import AtomsData
from visnet.units import ENERGY_UNITS, LENGTH_UNITS, canonical_unit, energy_factor, force_factor, length_factor

__all__ = [
    "AtomsData",
    "AtomsDataset",
    "ENERGY_UNITS",
    "LENGTH_UNITS",
    "QM9_TARGETS",
    "Statistics",
    "ViSNetDataModule",
    "canonical_unit",
    "collate",
    "compute_statistics",
    "convert_units",
    "detect_format",
    "energy_factor",
    "force_factor",
    "head_for_target",
    "is_extensive",
    "length_factor",
    "load_atoms_data",
    "load_or_make_splits",
    "make_splits",
    "read_splits",
]


def __getattr__(name: str) -> Any:
    if name == "ViSNetDataModule":
        return import_module("visnet.data.datamodule").ViSNetDataModule
    raise AttributeError(f"module 'visnet.data' has no attribute {name!r}")
