"""Small models and payloads shared by several test modules (so test modules never import each other)."""

from __future__ import annotations

from pathlib import Path

import torch
from ase import Atoms
from conftest import randomize_biases

from visnet import ViSNet

CUTOFF = 4.0  # Å


def small_model(seed: int = 0, dtype: torch.dtype = torch.float64, **metadata) -> ViSNet:
    """A random 2-layer ViSNet with trained-like biases (forces ~0.1–1 eV/Å on molecules)."""
    torch.manual_seed(seed)
    model = ViSNet(hidden_channels=32, num_layers=2, num_rbf=16, num_heads=4, cutoff=CUTOFF, max_z=10)
    model = randomize_biases(model.to(dtype), scale=0.2, seed=seed)
    if metadata:
        model.metadata = metadata
    return model


def water_molecule(**kwargs) -> Atoms:
    return Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], **kwargs)


def lightning_payload(model: ViSNet) -> dict:
    """What ``visnet fit`` writes into a .ckpt, as far as ``load_model`` reads it."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    return {
        "pytorch-lightning_version": "2.6.0",
        "state_dict": state,
        "global_step": 8,
        "hyper_parameters": {"model_hparams": dict(model.hparams), "metadata": {"dtype": "float64"}},
    }


class PickledCode:
    """Unpickling this would create ``marker``: the file must be refused before that."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))
