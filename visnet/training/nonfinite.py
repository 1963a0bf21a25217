"""Skipping optimizer steps whose gradients are not finite.

One batch with a NaN or infinite gradient (an overflow in float32, a pathological structure) would
turn every weight into NaN at the optimizer step, after which nothing can be learned and the next
checkpoints are worthless. ``NonFiniteSteps.check`` runs between the backward pass and the optimizer
step: it drops such a step's gradients (AdamW then leaves every weight and moment unchanged), warns
with the structures of the batch, and stops training with a clear error when the steps keep failing.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from visnet.errors import VisnetError


class NonFiniteGradientError(VisnetError, RuntimeError):
    """Training stopped: too many consecutive optimizer steps had non-finite gradients (the user's
    to fix: learning rate or data, so ``visnet fit`` reports it as one line, not a traceback)."""


class NonFiniteSteps:
    """Counts and skips optimizer steps with non-finite gradients.

    Args:
        limit: consecutive skipped steps after which training stops with ``NonFiniteGradientError``
            (the weights, not a single batch, are then the problem).
    """

    def __init__(self, limit: int = 25) -> None:
        self.limit = limit
        self.skipped = 0
        self.consecutive = 0

    def check(self, parameters: list[torch.nn.Parameter], structures: Tensor | None, step: int) -> bool:
        """Returns True when every gradient is finite; otherwise clears them all and returns False.

        Args:
            parameters: the trained parameters (their ``.grad`` after the backward pass).
            structures: (B,) dataset indices of the batch's structures, named in the warning.
            step: the global optimizer step, named in the warning.
        """
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
            self.consecutive = 0
            return True
        for p in parameters:
            p.grad = None
        self.skipped += 1
        self.consecutive += 1
        where = f"structures {structures.tolist()}" if structures is not None else "this batch"
        if self.consecutive >= self.limit:
            raise NonFiniteGradientError(
                f"{self.consecutive} consecutive optimizer steps had non-finite gradients (last: step {step}, "
                f"{where}); lower model.lr, check the data or resume from checkpoints/best.ckpt"
            )
        warnings.warn(
            f"step {step}: non-finite gradient from {where}; step skipped ({self.skipped} so far)", stacklevel=2
        )
        return False
