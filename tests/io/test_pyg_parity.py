"""Imported PyG ViSNet weights reproduce PyG's own energies and forces (PyG run with our
neighbour list standing in for radius_graph, which needs the unavailable pyg-lib)."""

from __future__ import annotations

import pytest
import torch

from visnet import ViSNet, from_pyg, radius_graph

pyg_visnet = pytest.importorskip("torch_geometric.nn.models.visnet")

from conftest import randomize_biases  # noqa: E402


def _our_radius_graph(x, r, batch=None, loop=False, max_num_neighbors=32, **_):
    return radius_graph(x.detach(), r, batch, self_loops=loop).edge_index


@pytest.fixture(autouse=True)
def _patch_radius_graph(monkeypatch):
    monkeypatch.setattr(pyg_visnet, "radius_graph", _our_radius_graph)


def _batch_of_two(ethanol, aspirin):
    (z1, p1), (z2, p2) = ethanol, aspirin
    z = torch.cat([z1, z2])
    pos = torch.cat([p1, p2 + 3.0])
    batch = torch.cat([torch.zeros(len(z1), dtype=torch.long), torch.ones(len(z2), dtype=torch.long)])
    return z, pos, batch


@pytest.fixture
def float64_default():
    """PyG's ViSNet allocates in the default dtype (the defect we fix), so running the *reference*
    in float64 needs the global default switched for the duration of the test."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize(
    "lmax,vecnorm,vertex",
    [(1, None, False), (2, None, False), (1, "max_min", False), (2, "max_min", True), (1, None, True)],
)
def test_energy_and_forces_match_pyg(lmax, vecnorm, vertex, ethanol, aspirin, float64_default):
    torch.manual_seed(0)
    ref = pyg_visnet.ViSNet(
        lmax=lmax,
        vecnorm_type=vecnorm,
        trainable_vecnorm=vecnorm is not None,
        num_heads=4,
        num_layers=3,
        hidden_channels=32,
        num_rbf=16,
        cutoff=4.0,
        vertex=vertex,
        derivative=True,
        mean=0.3,
        std=1.7,
    ).double()
    randomize_biases(ref)
    ours = from_pyg(ref)
    z, pos, batch = _batch_of_two(ethanol, aspirin)

    e_ref, f_ref = ref(z, pos.clone(), batch)
    out = ours(z, pos, batch)

    # float64: summation order differs (index_add vs scatter), so agreement is ~1e-12 relative.
    torch.testing.assert_close(out["energy"], e_ref.squeeze(-1).detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out["forces"], f_ref.detach(), rtol=1e-10, atol=1e-10)


def test_imported_model_keeps_reference_switches():
    ref = pyg_visnet.ViSNet(num_layers=2, hidden_channels=16, num_heads=2, derivative=False)
    ours = from_pyg(ref)
    assert not ours.hparams["vector_cutoff"]
    assert not ours.hparams["isolated_atom_reference"]
    assert not ours.derivative
    assert isinstance(ours, ViSNet)


def test_float32_parity(ethanol):
    torch.manual_seed(1)
    ref = randomize_biases(
        pyg_visnet.ViSNet(lmax=2, num_heads=4, num_layers=3, hidden_channels=32, derivative=True), 0.1
    )
    ours = from_pyg(ref)
    z, pos = ethanol
    pos = pos.float()
    batch = torch.zeros(len(z), dtype=torch.long)
    e_ref, f_ref = ref(z, pos.clone(), batch)
    out = ours(z, pos)
    # float32 rounding (~1e-7 per op, accumulated over a few thousand ops) relative to the output scale.
    torch.testing.assert_close(out["energy"], e_ref.squeeze(-1).detach(), rtol=1e-5, atol=0)
    scale = f_ref.abs().max().item()
    torch.testing.assert_close(out["forces"], f_ref.detach(), rtol=0, atol=1e-4 * scale)
