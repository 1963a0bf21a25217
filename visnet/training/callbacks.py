"""Training callbacks: a checkpoint callback whose ``last.ckpt`` is really the last, an
exponential moving average of the weights, and a wall-clock column for the learning curves.

``RunCheckpoint``: Lightning 2.6's ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` only
when a top-k checkpoint is written at the same step (a change from earlier releases; see
openclimatefix/pvnet#544), so with ``save_top_k=1`` ``last.ckpt`` is a copy of the *best* epoch and
``visnet fit --ckpt_path last`` silently resumed from there, throwing the later epochs away.

``EMA`` is Lightning's own ``EMAWeightAveraging`` (``lightning.pytorch.callbacks``): validation,
checkpoints and the exported model use the averaged weights; training continues on the raw ones.
The subclass only leaves the model untouched until the first average exists: Lightning copies the
module when fitting starts, before the dataset statistics are put into it, so swapping in that
copy before the first update would validate (and checkpoint) a model without its statistics.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint, Timer

ELAPSED_TIME = "elapsed_time"  # metrics.csv column: wall-clock seconds since training started


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that also writes ``last.ckpt`` after every validation (same arguments).

    Uses ModelCheckpoint's own ``_save_last_checkpoint`` (atomic overwrite, version counter, state
    for resuming); only the decision *when* to call it changes.
    """

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._write_last(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._write_last(trainer)

    def _write_last(self, trainer: pl.Trainer) -> None:
        if not self.save_last or trainer.sanity_checking or bool(trainer.fast_dev_run):
            return
        if trainer.state.fn != "fit" or self._last_global_step_saved == trainer.global_step:
            return  # nothing new since the last write (the parent saved last at this step)
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class EMA(EMAWeightAveraging):
    """EMA of the weights, updated after every optimizer step.

    Args:
        decay: weight of the old average per update (0.999: averages over ~1000 steps).
        update_starting_at_step: first optimizer step that updates the average (default 0).
        update_every_n_steps: update interval in optimizer steps.
    """

    def __init__(
        self, decay: float = 0.999, update_starting_at_step: int | None = None, update_every_n_steps: int = 1
    ) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        super().__init__(
            decay=decay, update_starting_at_step=update_starting_at_step, update_every_n_steps=update_every_n_steps
        )

    def _has_average(self) -> bool:
        return self._average_model is not None and int(self._average_model.n_averaged) > 0

    def _swap_models(self, pl_module: pl.LightningModule) -> None:
        if self._has_average():
            super()._swap_models(pl_module)

    def _copy_average_to_current(self, pl_module: pl.LightningModule) -> None:
        if self._has_average():
            super()._copy_average_to_current(pl_module)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._average_model is None or self._has_average():
            super().on_save_checkpoint(trainer, pl_module, checkpoint)


class ElapsedTime(Timer):
    """Logs ``elapsed_time``: wall-clock seconds since training started (validation included),
    at the end of every training epoch, so ``metrics.csv`` carries a time axis.

    Lightning's ``Timer`` (no duration limit) does the timing and keeps the elapsed time in
    checkpoints: a resumed run continues the clock instead of restarting it at 0.
    """

    def __init__(self) -> None:
        super().__init__(duration=None, verbose=False)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        elapsed = self.time_elapsed("train")  # the slowest rank's under DDP (every rank logs it)
        pl_module.log(
            ELAPSED_TIME, elapsed, on_step=False, on_epoch=True, batch_size=1, sync_dist=True, reduce_fx="max"
        )
