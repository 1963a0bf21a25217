"""A batch with non-finite gradients is skipped, not applied: the weights stay finite and unchanged."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from conftest import shared_file

from visnet.data import ViSNetDataModule
from visnet.errors import is_user_error
from visnet.training.module import ViSNetModule
from visnet.training.nonfinite import NonFiniteGradientError, NonFiniteSteps


def _poison(module: ViSNetModule, steps: set[int]) -> None:
    """Makes the gradient of one weight NaN on the given optimizer steps (as an overflow would)."""
    weight = next(p for p in module.model.parameters() if p.requires_grad)

    def hook(grad: torch.Tensor) -> torch.Tensor:
        return grad * float("nan") if module.trainer.global_step in steps else grad

    weight.register_hook(hook)


def _data(tmp_path) -> ViSNetDataModule:
    src = np.load(shared_file("rmd17", "rmd17_ethanol_train1000.npz"))
    path = tmp_path / "ethanol.npz"
    np.savez(path, R=src["R"][:24], z=src["z"], E=src["E"][:24], F=src["F"][:24])
    return ViSNetDataModule(str(path), num_train=16, num_val=4, batch_size=4, run_dir=str(tmp_path))


def _trainer(max_steps: int) -> pl.Trainer:
    return pl.Trainer(
        max_steps=max_steps,
        inference_mode=False,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=10.0,
        limit_val_batches=0,
    )


def test_nan_gradient_step_is_skipped_and_training_goes_on(tmp_path):
    torch.manual_seed(0)
    module = ViSNetModule(hidden_channels=16, num_layers=1, num_heads=2, max_z=10, lr_warmup_steps=1)
    _poison(module, steps={1})
    with pytest.warns(UserWarning, match=r"step 1: non-finite gradient from structures \[.*\]; step skipped"):
        _trainer(4).fit(module, datamodule=_data(tmp_path))
    assert module._nonfinite.skipped == 1
    assert all(bool(torch.isfinite(p).all()) for p in module.model.parameters())


def test_skipped_step_leaves_weights_and_optimizer_state_unchanged():
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([weight], lr=0.1)
    weight.grad = torch.ones(3)
    optimizer.step()
    before, moment = weight.detach().clone(), optimizer.state[weight]["exp_avg"].clone()
    weight.grad = torch.tensor([1.0, float("inf"), 0.0])
    guard = NonFiniteSteps()
    with pytest.warns(UserWarning, match="step 7: non-finite gradient from structures \\[3, 4\\]"):
        assert guard.check([weight], torch.tensor([3, 4]), step=7) is False
    optimizer.step()
    assert torch.equal(weight.detach(), before) and torch.equal(optimizer.state[weight]["exp_avg"], moment)


def test_persistent_nan_stops_with_a_clear_error():
    weight = torch.nn.Parameter(torch.ones(2))
    guard = NonFiniteSteps(limit=3)
    with pytest.warns(UserWarning), pytest.raises(NonFiniteGradientError, match="3 consecutive optimizer steps") as err:
        for step in range(3):
            weight.grad = torch.full((2,), float("nan"))
            guard.check([weight], None, step)
    assert is_user_error(err.value)  # visnet fit prints it as one line and exits 2
    weight.grad = torch.ones(2)
    guard.consecutive = 0
    assert guard.check([weight], None, 4) is True
