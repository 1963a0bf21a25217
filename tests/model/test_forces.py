"""``visnet.model.forces``: the autograd wrapper around an energy function, alone and around ViSNet."""

from __future__ import annotations

from functools import partial

import torch

from visnet import ViSNet
from visnet.model.forces import energy_and_derivatives
from visnet.neighbors import radius_graph

K = 2.5  # spring constant of the toy energy, energy units per Å²


def _harmonic(pos: torch.Tensor, cell: torch.Tensor | None, batch: torch.Tensor) -> dict[str, torch.Tensor]:
    """E_g = Σ_{i in g} K |r_i|² / 2 per graph: forces −K r, virial −Σ K r rᵀ under r → (1 + ε) r."""
    per_atom = 0.5 * K * (pos * pos).sum(-1)
    return {"energy": torch.zeros(2, dtype=pos.dtype).index_add(0, batch, per_atom)}


def test_forces_and_virial_of_a_harmonic_energy():
    gen = torch.Generator().manual_seed(0)
    pos = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    batch = torch.tensor([0, 0, 1, 1, 1])
    cell = 4.0 * torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
    fn = partial(_harmonic, batch=batch)
    out = energy_and_derivatives(fn, pos, cell, batch, 2, forces=True, stress=True)
    torch.testing.assert_close(out["forces"], -K * pos, rtol=1e-12, atol=1e-12)  # float64: exact up to rounding
    for g in range(2):
        r = pos[batch == g]
        torch.testing.assert_close(out["virial"][g], -K * r.T @ r, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out["stress"][g], K * r.T @ r / 64.0, rtol=1e-12, atol=1e-12)
    assert not out["forces"].requires_grad  # inference: no double-backward graph


def test_create_graph_only_when_asked():
    pos = torch.randn(5, 3, dtype=torch.float64)
    batch = torch.tensor([0, 0, 1, 1, 1])
    out = energy_and_derivatives(partial(_harmonic, batch=batch), pos, None, batch, 2, create_graph=True)
    assert out["forces"].requires_grad
    out["forces"].sum().backward()  # training on forces differentiates them again


def test_model_forward_is_energy_plus_the_wrapper():
    torch.manual_seed(0)
    model = ViSNet(hidden_channels=16, num_layers=2, num_heads=2, num_rbf=8, cutoff=4.0).double().eval()
    z = torch.tensor([8, 1, 1])
    pos = torch.tensor([[0.0, 0.0, 0.1], [0.76, 0.0, -0.5], [-0.76, 0.1, -0.5]], dtype=torch.float64)
    batch = torch.zeros(3, dtype=torch.long)
    graph = radius_graph(pos, model.cutoff, batch, None, None, self_loops=True)
    fn = partial(model.energy, z, batch=batch, neighbors=graph, num_graphs=1)
    wrapped = energy_and_derivatives(fn, pos, None, batch, 1)
    direct = model(z, pos)
    torch.testing.assert_close(wrapped["energy"], direct["energy"], rtol=0, atol=0)
    torch.testing.assert_close(wrapped["forces"], direct["forces"], rtol=0, atol=0)


def test_backward_after_eval_forces_explains_itself():
    import pytest

    model = ViSNet(hidden_channels=16, num_layers=1, num_heads=2, num_rbf=8).double().eval()
    z, pos = torch.tensor([8, 1, 1]), torch.tensor([[0, 0, 0.1], [0.76, 0, -0.5], [-0.76, 0, -0.5]]).double()
    out = model(z, pos)
    with pytest.raises(RuntimeError, match="freed when the model computed its forces"):
        out["energy"].backward()
    model(z, pos, compute_forces=False)["energy"].backward()  # without forces the graph is the caller's
    model.train()
    model(z, pos)["energy"].backward()
