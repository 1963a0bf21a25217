"""Training: the LightningModule, losses, metrics, EMA callback, export, CLI and evaluation."""

from visnet.training.callbacks import EMA
from visnet.training.export import export_model
from visnet.training.module import ViSNetModule

__all__ = ["EMA", "ViSNetModule", "export_model"]
