"""Regression losses by name: "mse", "l1" (MAE) and "huber"."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor
from torch.nn import functional as F

LOSSES = ("mse", "l1", "huber")


def loss_function(name: str, huber_delta: float = 0.01) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss ``f(pred, target) -> scalar`` (mean over all elements).

    Args:
        name: "mse", "l1" or "huber".
        huber_delta: Huber transition point, in the units of the (energy/force) values.
    """
    name = name.lower()
    if name == "mse":
        return F.mse_loss
    if name in ("l1", "mae"):
        return F.l1_loss
    if name == "huber":
        return lambda pred, target: F.huber_loss(pred, target, delta=huber_delta)
    raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")


def target_loss(fn: Callable[[Tensor, Tensor], Tensor], pred: Tensor, target: Tensor) -> Tensor:
    """``fn`` on molecular targets computed in float64 (large absolute energies lose digits in
    float32), returned in the dtype of ``pred``."""
    return fn(pred.to(target.dtype), target).to(pred.dtype)
