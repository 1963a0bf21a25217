"""Compiled force training (``--model.compile true``, visnet.training.compiled_step): on a fixed batch
in float64 the compiled step gives the eager step's energies, forces, loss and weight gradients (to
1e-10 relative), for batches of other sizes too without compiling again; validation stays eager."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import shared_file

from visnet.training.compiled_step import CompiledTraining
from visnet.training.module import ViSNetModule

ARCH = dict(hidden_channels=16, num_layers=2, num_rbf=8, lmax=2, num_heads=2, max_z=10, cutoff=4.0)


def ethanol_batch(frames: list[int]) -> dict[str, torch.Tensor]:
    """A collated batch of rMD17 ethanol frames (float64, kcal/mol units as stored)."""
    data = np.load(shared_file("rmd17", "rmd17_ethanol_train1000.npz"))
    z = torch.as_tensor(data["z"], dtype=torch.long)
    return {
        "z": z.repeat(len(frames)),
        "pos": torch.as_tensor(data["R"][frames], dtype=torch.float64).reshape(-1, 3),
        "batch": torch.arange(len(frames)).repeat_interleave(len(z)),
        "forces": torch.as_tensor(data["F"][frames], dtype=torch.float64).reshape(-1, 3),
        "y": torch.as_tensor(data["E"][frames], dtype=torch.float64).reshape(-1),
    }


def module(compile: bool) -> ViSNetModule:
    torch.manual_seed(0)
    lit = ViSNetModule(compile=compile, **ARCH).double().train()
    with torch.no_grad():  # non-zero biases and mean, so every term contributes
        for p in lit.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return lit


def loss_and_gradients(lit: ViSNetModule, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list]:
    out = lit(batch, compute_forces=True)
    loss = 0.05 * lit.loss_fn(out["energy"], batch["y"]) + 0.95 * lit.loss_fn(out["forces"], batch["forces"])
    params = [p for p in lit.parameters() if p.requires_grad]
    return loss.detach(), torch.autograd.grad(loss, params, allow_unused=True)


def test_compile_option_defaults_off_and_is_no_submodule() -> None:
    lit = module(compile=False)
    assert lit.hparams.compile is False
    compiled = ViSNetModule(compile=True, **ARCH)
    assert set(compiled.state_dict()) == set(lit.state_dict())  # nothing compiled is saved


@pytest.mark.slow  # one training-graph compile of a tiny model (~1-3 min on a loaded 2-core machine)
def test_compiled_step_equals_eager_on_a_fixed_batch() -> None:
    torch.set_num_threads(1)
    eager, compiled = module(compile=False), module(compile=True)
    for frames in ([0, 5, 9, 13], [2, 3, 7]):  # a second batch size: the same graph
        batch = ethanol_batch(frames)
        loss, grads = loss_and_gradients(eager, batch)
        compiled_loss, compiled_grads = loss_and_gradients(compiled, batch)
        assert abs(float(compiled_loss - loss)) <= 1e-10 * abs(float(loss))
        for got, want in zip(compiled_grads, grads, strict=True):
            assert (got is None) == (want is None)
            if want is not None:
                assert float((got - want).abs().max()) <= 1e-10 * max(float(want.abs().max()), 1.0)
    assert isinstance(compiled._compiled, CompiledTraining) and compiled._compiled.compiles == 1
    compiled.eval()  # validation: the eager model (no compiled graph for eval)
    out = compiled(ethanol_batch([1, 2]), compute_forces=True)
    assert out["forces"].shape == (18, 3)


def test_config_key_model_compile(capsys: pytest.CaptureFixture) -> None:
    """``visnet fit ... --model.compile true`` is the config key ``model.compile`` (default false)."""
    from conftest import REPO

    from visnet.cli.fit import lightning_main

    config = str(REPO / "configs" / "rmd17_ethanol_cpu.yaml")
    assert lightning_main(["fit", "--config", config, "--print_config"]) == 0
    assert "compile: false" in capsys.readouterr().out
    assert lightning_main(["fit", "--config", config, "--model.compile", "true", "--print_config"]) == 0
    assert "compile: true" in capsys.readouterr().out
