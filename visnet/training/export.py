"""Export of the best checkpoint of a run as a plain model file (``visnet.save_model``):
``<run>/model.pt``, the name ``visnet.inference.committee`` reads run folders and members by."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from visnet.inference.committee import MODEL_FILE
from visnet.io.model_files import load_model, save_model

if TYPE_CHECKING:  # type hints only: the inference paths import this module and never Lightning
    import lightning.pytorch as pl

__all__ = ["MODEL_FILE", "best_checkpoint", "export_best", "export_model"]


def best_checkpoint(trainer: pl.Trainer) -> Path | None:
    """The best checkpoint of the run (by the monitored metric), else the last one, else None."""
    callback = trainer.checkpoint_callback
    if callback is None:
        return None
    for candidate in (getattr(callback, "best_model_path", ""), getattr(callback, "last_model_path", "")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def export_model(checkpoint: str | Path, path: str | Path, **extra: Any) -> Path:
    """Write the model of a ``visnet fit`` checkpoint as a ``save_model`` file (atomic write).

    Args:
        checkpoint: a Lightning ``.ckpt`` written by ``visnet fit`` (EMA weights when EMA was used).
        path: the model file to write (``model.pt``).
        **extra: metadata added to the checkpoint's (e.g. ``interrupted=True``).

    Returns:
        The path written.
    """
    model = load_model(checkpoint)
    metadata = dict(model.metadata)
    metadata["checkpoint"] = str(checkpoint)
    metadata.update(extra)
    return save_model(model, path, **metadata)


def export_best(trainer: pl.Trainer, run_dir: str | Path, **extra: Any) -> Path | None:
    """Export the best checkpoint of ``trainer`` as ``run_dir/model.pt`` (``extra``: metadata to
    add); None if there is none."""
    checkpoint = best_checkpoint(trainer)
    if checkpoint is None:
        return None
    return export_model(checkpoint, Path(run_dir) / MODEL_FILE, **extra)
