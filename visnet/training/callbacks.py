"""Training callbacks: exponential moving average of the weights.

``EMA`` is Lightning's own ``EMAWeightAveraging`` (``lightning.pytorch.callbacks``): validation,
checkpoints and the exported model use the averaged weights; training continues on the raw ones.
The subclass only leaves the model untouched until the first average exists: Lightning copies the
module when fitting starts, before the dataset statistics are put into it, so swapping in that
copy before the first update would validate (and checkpoint) a model without its statistics.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EMAWeightAveraging


class EMA(EMAWeightAveraging):
    """EMA of the weights, updated after every optimizer step.

    Args:
        decay: weight of the old average per update (0.999: averages over ~1000 steps).
        update_starting_at_step: first optimizer step that updates the average (default 0).
        update_every_n_steps: update interval in optimizer steps.
    """

    def __init__(self, decay: float = 0.999, update_starting_at_step: int | None = None, update_every_n_steps: int = 1) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        super().__init__(decay=decay, update_starting_at_step=update_starting_at_step, update_every_n_steps=update_every_n_steps)

    def _has_average(self) -> bool:
        return self._average_model is not None and int(self._average_model.n_averaged) > 0

    def _swap_models(self, pl_module: pl.LightningModule) -> None:
        if self._has_average():
            super()._swap_models(pl_module)

    def _copy_average_to_current(self, pl_module: pl.LightningModule) -> None:
        if self._has_average():
            super()._copy_average_to_current(pl_module)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._average_model is None or self._has_average():
            super().on_save_checkpoint(trainer, pl_module, checkpoint)
