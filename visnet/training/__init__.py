"""Training: the LightningModule, losses, metrics, EMA callback, export and evaluation.

The commands (``visnet fit``, ``visnet evaluate``, ``visnet plot``) parse their options in
``visnet.cli``. ``EMA``, ``ViSNetModule`` and ``export_model`` import Lightning, so they are loaded
on first access: evaluation (``visnet.training.evaluate``) and other inference paths never import it.
"""

from importlib import import_module
from typing import Any

__all__ = ["EMA", "ViSNetModule", "export_model"]

_LAZY = {
    "EMA": "visnet.training.callbacks",
    "ViSNetModule": "visnet.training.module",
    "export_model": "visnet.training.export",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'visnet.training' has no attribute {name!r}")
