"""The fit loop of ``visnet fit``: Lightning's, except how a checkpoint written at the end of an
epoch resumes when ``trainer.max_steps`` is set.

``RunCheckpoint`` writes ``last.ckpt`` at the end of every epoch (validating every epoch, the
default), after the epoch's last batch, its validation and early stopping's check, with the epoch
counted as processed but not yet as completed. Without ``max_steps`` Lightning resumes such a
checkpoint at the next epoch. With ``max_steps`` (Lightning 2.6, "iteration-based training") it
marks every restored fit loop as restarting, so it replays the end of the finished epoch: no batch
and no validation run, the epoch is counted a second time (a 4-step run resumed to 8 steps stopped
at ``max_epochs`` 2 without training a step) and the epoch-end callbacks run again on a metric-less
epoch: ``EarlyStopping`` raised "Early stopping conditioned on metric `val_loss` which is not
available" (Lightning-AI/pytorch-lightning#19617 describes the same replay).

``EpochEndResumeLoop`` resumes an epoch-end checkpoint as Lightning resumes it without
``max_steps``; a checkpoint written inside an epoch (``every_n_train_steps``, ``max_steps`` before
the epoch's last batch) resumes as before.
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.loops.fit_loop import _FitLoop
from lightning.pytorch.loops.loop import _Loop

__all__ = ["EpochEndResumeLoop", "use_epoch_end_resume"]


class EpochEndResumeLoop(_FitLoop):
    """Lightning's fit loop; a restored epoch-end checkpoint resumes at the next epoch with or
    without ``max_steps`` (see the module docstring)."""

    @_Loop.restarting.setter
    def restarting(self, restarting: bool) -> None:
        if restarting and self._iteration_based_training() and self._at_epoch_end():
            _Loop.restarting.fset(self, False)  # as the parent decides without max_steps
        else:
            _FitLoop.restarting.fset(self, restarting)

    def _at_epoch_end(self) -> bool:
        """The restored state is an epoch's end: all its batches trained, the epoch processed (its
        ``on_train_epoch_end`` reached) and not yet completed."""
        epoch = self.epoch_progress.current
        finished = epoch.ready == epoch.started == epoch.processed == epoch.completed + 1
        return finished and bool(self.epoch_loop.batch_progress.is_last_batch)


def use_epoch_end_resume(trainer: pl.Trainer) -> None:
    """Give ``trainer`` an ``EpochEndResumeLoop`` in place of its fit loop, before it fits (its
    epoch loop, limits and state are kept)."""
    loop = trainer.fit_loop
    if isinstance(loop, EpochEndResumeLoop):
        return
    replacement = EpochEndResumeLoop(trainer, min_epochs=loop.min_epochs, max_epochs=loop.max_epochs)
    replacement.epoch_loop = loop.epoch_loop
    trainer.fit_loop = replacement
