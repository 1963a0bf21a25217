"""How a fit stops on SIGTERM or SIGINT: at the same batch on every rank, with ``last.ckpt`` intact.

Lightning 2.6's SIGTERM handler (``_SignalConnector._sigterm_notifier_fn``) runs a collective,
``dist.broadcast``, inside the signal handler. Python runs a handler between two bytecodes of the
main thread, wherever that rank happens to be, and not at all while the rank waits inside a
collective: the handler's broadcast pairs with whatever collective another rank runs next (a
gradient all-reduce, a metric sync, the loop's own per-batch broadcast) or with none, and the ranks
wait for each other forever: "[rank: N] Received SIGTERM: 15", then nothing, until SIGKILL. Its
loops also raise ``SIGTERMException`` on one rank alone, and that exit code was 0.

``SignalStop`` replaces that handling during ``fit``. A SIGTERM or SIGINT only records the signal
(no I/O, no collective in the handler). At the end of every training and validation batch, a point
every rank reaches the same number of times, the ranks all-reduce what they received (one scalar
``max``); when any rank got a signal, all of them raise ``StopRequested`` there, together. Lightning
then marks the run interrupted and tears down (``visnet fit`` exports the best checkpoint marked
``"interrupted": true``), and the process exits with 128 + the signal number (143 for SIGTERM, 130
for SIGINT). No checkpoint is written at the stop: ``last.ckpt`` stays the one the last validation
wrote, so ``--ckpt_path last`` resumes exactly (a checkpoint inside an epoch would resume with
another training order: the training loader is not resumable mid-epoch). A second stop signal
acts at once, as it would without this handling (SIGINT: KeyboardInterrupt; SIGTERM: the process
ends). A signal the process was started ignoring (SIGINT of a background job) stays ignored.

``AtomicCheckpointIO`` writes checkpoints through ``visnet.files.atomic``: a temporary file in the
checkpoints folder, fsync, rename. Lightning's ``TorchCheckpointIO`` stages the file in the system
temporary folder (``tempfile.mkstemp()``) and moves it: a rename only when that folder is on the
checkpoints' file system; across file systems (node-local ``/tmp``, run folder on a cluster's
shared file system) the move is a copy into ``last.ckpt``, and a kill during it leaves a truncated
checkpoint.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import lightning.pytorch as pl
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins import TorchCheckpointIO
from lightning.pytorch.trainer.connectors.signal_connector import _SignalConnector
from lightning.pytorch.utilities.exceptions import SIGTERMException

from visnet.files.atomic import atomic_open

__all__ = ["STOP_SIGNALS", "AtomicCheckpointIO", "SignalStop", "StopRequested", "use_signal_stop"]

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)


class StopRequested(SIGTERMException):
    """Raised on every rank at the same batch when a stop signal was received (a ``SystemExit``
    whose code is 128 + the signal number, as a shell reports a process ended by that signal).

    Args:
        signum: the signal received (by any rank).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + int(signum))
        self.signum = int(signum)


class SignalStop(Callback):
    """Stops ``fit`` on SIGTERM or SIGINT at the end of the current training or validation batch,
    on every rank at the same batch (see the module docstring).

    Args:
        signals: the signals that stop the fit (default SIGTERM and SIGINT).
    """

    def __init__(self, signals: Sequence[int] = STOP_SIGNALS) -> None:
        self.signals = tuple(signal.Signals(s) for s in signals)
        self.received: int | None = None  # the first stop signal this process received

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and not isinstance(trainer._signal_connector, _StopSignalConnector):
            trainer._signal_connector = _StopSignalConnector(trainer, self)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._stop_if_requested(trainer)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.state.fn == "fit":  # also the sanity check; not `visnet validate`
            self._stop_if_requested(trainer)

    def request(self, signum: int) -> None:
        """Record a stop signal (what the signal handler does); the fit stops at the next batch end."""
        if self.received is None:
            self.received = int(signum)

    def _stop_if_requested(self, trainer: pl.Trainer) -> None:
        """All ranks agree (one all-reduce, every rank calls it at the same batch) and stop together."""
        signum = self.received or 0
        if trainer.world_size > 1:
            local = torch.tensor(signum, dtype=torch.int64, device=trainer.strategy.root_device)
            signum = int(trainer.strategy.reduce(local, reduce_op="max").item())
        if not signum:
            return
        if trainer.is_global_zero:
            where = "validation" if trainer.validating or trainer.sanity_checking else "training"
            print(
                f"{signal.Signals(signum).name} received: stopping ({where}, step {trainer.global_step}, "
                f"epoch {trainer.current_epoch + 1}); a second {signal.Signals(signum).name} stops at once",
                file=sys.stderr,
                flush=True,
            )
        raise StopRequested(signum)


class _StopSignalConnector(_SignalConnector):
    """Lightning's signal connector (SLURM's requeue signal kept), with ``SignalStop``'s handler on
    its signals during ``fit`` instead of Lightning's SIGTERM handler."""

    def __init__(self, trainer: pl.Trainer, stop: SignalStop) -> None:
        super().__init__(trainer)
        self.stop = stop

    def register_signal_handlers(self) -> None:
        if self.trainer.state.fn != "fit":
            super().register_signal_handlers()
            return
        self.stop.received = None
        with _blocked(self.stop.signals):  # no signal reaches Lightning's handler in between
            super().register_signal_handlers()  # also saves the handlers that teardown restores
            for signum in self.stop.signals:
                ignored = self._original_handlers.get(signum) == signal.SIG_IGN
                self._register_signal(signum, signal.SIG_IGN if ignored else self._request_stop)

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler: record the first signal; a second one acts as without this handler."""
        if self.stop.received is None:
            self.stop.request(signum)
            return
        previous = self._original_handlers.get(signum)
        if callable(previous):
            previous(signum, frame)  # SIGINT: Python's default_int_handler raises KeyboardInterrupt
        else:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)


@contextmanager
def _blocked(signals: Sequence[int]) -> Iterator[None]:
    """Hold ``signals`` back (delivered when the block ends), where the platform can."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes go through ``visnet.files.atomic.atomic_open``: a
    temporary file beside the checkpoint, fsync, rename over it. A kill at any moment leaves the
    previous checkpoint whole (see the module docstring); the temporary file a kill left is removed
    by the next write of that checkpoint. Other file systems (``s3://``, ...) are written as
    Lightning writes them."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)
        with atomic_open(path, "wb") as handle:
            torch.save(checkpoint, handle)


def use_signal_stop(trainer: pl.Trainer) -> None:
    """Give ``trainer`` a ``SignalStop`` callback (unless it has one) and, when it writes checkpoints
    with Lightning's default ``TorchCheckpointIO``, an ``AtomicCheckpointIO`` instead."""
    if not any(isinstance(callback, SignalStop) for callback in trainer.callbacks):
        trainer.callbacks.append(SignalStop())
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
