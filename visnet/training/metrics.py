"""Error metrics and their names in the logs.

Logged per stage (``train``/``val``/``test``): ``<stage>_<target>_mae`` (energy MAE per molecule, or
the QM9 property's MAE) and ``<stage>_forces_mae`` (force MAE per component), in the training units;
for targets in eV also ``..._mae_meV`` (meV, meV/Å), the unit of PyG's and the paper's QM9 tables.
"""

from __future__ import annotations

import torch
from torch import Tensor

from visnet.units import milli


def mae(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error in float64."""
    return (pred.double() - target.double()).abs().mean()


def metric_names(stage: str, target: str, unit: str) -> dict[str, tuple[str, float]]:
    """{quantity: (log name, factor)} for the target and the forces, plus paper-unit variants."""
    names = {"y": (f"{stage}_{target}_mae", 1.0), "forces": (f"{stage}_forces_mae", 1.0)}
    factor, paper_unit = milli(unit)
    if paper_unit != unit:
        names["y_paper"] = (f"{stage}_{target}_mae_{paper_unit}", factor)
        names["forces_paper"] = (f"{stage}_forces_mae_{paper_unit}", factor)
    return names


def error_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """MAE, RMSE and max absolute error (float64) of two arrays of the same shape."""
    diff = (pred.double() - target.double()).reshape(-1)
    return {
        "mae": float(diff.abs().mean()),
        "rmse": float(diff.pow(2).mean().sqrt()),
        "max": float(diff.abs().max()) if diff.numel() else 0.0,
    }
