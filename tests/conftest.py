"""Shared fixtures: real molecules from ../shared/data and e3nn-style dtype tolerances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tolerances for identities that hold exactly in exact arithmetic; float32 accumulates ~1e-6 relative
# error per op over 10^3-10^4 ops in a 3-layer network, float64 ~1e-15 per op.
TOL = {torch.float32: 1e-4, torch.float64: 1e-10}


def shared_file(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not available: {path}")
    return path


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request) -> torch.dtype:
    return request.param


def _frame(name: str, index: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    data = np.load(shared_file("rmd17", name))
    return torch.as_tensor(data["z"], dtype=torch.long), torch.as_tensor(data["R"][index], dtype=torch.float64)


@pytest.fixture
def ethanol() -> tuple[torch.Tensor, torch.Tensor]:
    """(z (9,), pos (9, 3) Å float64): an rMD17 ethanol frame."""
    return _frame("rmd17_ethanol_train1000.npz")


@pytest.fixture
def aspirin() -> tuple[torch.Tensor, torch.Tensor]:
    """(z (21,), pos (21, 3) Å float64): an rMD17 aspirin frame."""
    return _frame("rmd17_aspirin_train1000.npz")


def randomize_biases(model: torch.nn.Module, scale: float = 0.5, seed: int = 0) -> torch.nn.Module:
    """Give every bias (and LayerNorm offset) trained-like non-zero values; fresh models have zeros."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
    return model
