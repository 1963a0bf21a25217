"""The sliced-edge operator (visnet.model.sliced_edges): the same energies, forces and stress as the
unsliced layers, with slices forced small through ``EDGE_CHUNK_BYTES``; float64 to 1e-10 relative,
float32 to 1e-5 (a different summation order of the same terms)."""

from __future__ import annotations

import pytest
import torch

import visnet
from visnet.model import representation
from visnet.model.sliced_edges import sliced_edges

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def frozen_model(dtype: torch.dtype, **options: object) -> visnet.ViSNet:
    torch.manual_seed(0)
    config = dict(hidden_channels=16, num_layers=3, num_rbf=8, num_heads=2, cutoff=4.0, max_z=10) | options
    model = visnet.ViSNet(**config).to(dtype).eval()
    with torch.no_grad():  # non-zero biases, so every term contributes
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.requires_grad_(False)


def water_like_box(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """8 randomly turned water molecules on a grid in a 6.2 Å periodic cell (liquid density): ~800
    edges, periodic images included."""
    generator = torch.Generator().manual_seed(1)
    grid = torch.cartesian_prod(*[torch.arange(2, dtype=torch.float64)] * 3) * 3.1 + 0.8
    rotations, _ = torch.linalg.qr(torch.randn(8, 3, 3, generator=generator, dtype=torch.float64))
    template = torch.tensor([[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0], [-0.24, 0.9266, 0.0]], dtype=torch.float64)
    pos = (grid[:, None, :] + torch.einsum("mij,aj->mai", rotations, template)).reshape(-1, 3)
    return {
        "z": torch.tensor([8, 1, 1] * 8),
        "pos": pos.to(dtype),
        "cell": (torch.eye(3, dtype=torch.float64) * 6.2).to(dtype).unsqueeze(0),
        "pbc": torch.ones(1, 3, dtype=torch.bool),
    }


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    scale = expected.abs().max().clamp(min=1.0)
    assert ((actual - expected).abs().max() / scale).item() < TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("options", [{}, {"lmax": 2, "vertex": True}, {"vector_cutoff": False}])
def test_sliced_operator_equals_unsliced_layers(
    dtype: torch.dtype, options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(1)
    model = frozen_model(dtype, **options)
    inputs = water_like_box(dtype)
    expected = model(**inputs, compute_stress=True)
    num_edges = visnet.neighbors.radius_graph(
        inputs["pos"], model.cutoff, torch.zeros(24, dtype=torch.long), inputs["cell"], inputs["pbc"], self_loops=True
    ).edge_index.size(1)
    assert model.representation_model.edge_chunk(num_edges, dtype) is None  # the reference is unsliced
    monkeypatch.setattr(representation, "EDGE_CHUNK_BYTES", 3e4)  # a few dozen edges per slice
    chunk = model.representation_model.edge_chunk(num_edges, dtype)
    assert chunk is not None and 4 * chunk < num_edges
    sliced = model(**inputs, compute_stress=True)
    for key in ("energy", "forces", "stress"):
        assert_close(sliced[key], expected[key], dtype)


def test_no_grad_calls_slice_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Energy-only calls of large systems are sliced as well (no (E, M, H) temporary per layer)."""
    model = frozen_model(torch.float64)
    inputs = water_like_box(torch.float64)
    expected = model(**inputs, compute_forces=False)["energy"]
    monkeypatch.setattr(representation, "EDGE_CHUNK_BYTES", 3e4)
    with torch.no_grad():
        assert_close(model(**inputs, compute_forces=False)["energy"], expected, torch.float64)


def test_weights_that_need_gradients_take_checkpointed_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """With trainable weights (eval mode, grad on) the layer slices through checkpoints, so weight
    gradients of the energy stay exact; the operator itself refuses such weights."""
    model = frozen_model(torch.float64).requires_grad_(True)
    inputs = water_like_box(torch.float64)
    params = list(model.parameters())

    def weight_gradients() -> tuple[torch.Tensor | None, ...]:
        energy = model(**inputs, compute_forces=False)["energy"].sum()
        return torch.autograd.grad(energy, params, allow_unused=True)

    expected = weight_gradients()
    monkeypatch.setattr(representation, "EDGE_CHUNK_BYTES", 3e4)
    for got, want in zip(weight_gradients(), expected, strict=True):
        assert (got is None) == (want is None)
        if want is not None:
            assert_close(got, want, torch.float64)
    layer = model.representation_model.vis_mp_layers[0]
    weights = layer.edge_weights()
    edge_index = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="no weight gradients"):
        sliced_edges(edge_index, torch.ones(3), torch.ones(3, 16), torch.ones(3, 3), [], weights, True, 2)


@pytest.mark.slow  # inductor compiles the two slice kernels (~20-60 s)
def test_compiled_slice_kernels_equal_eager_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """The slice kernels compiled for one padded slice shape (what compiled and exported models run)."""
    import visnet.model.message_passing as message_passing

    torch.set_num_threads(1)
    model = frozen_model(torch.float64)
    inputs = water_like_box(torch.float64)
    expected = model(**inputs, compute_stress=True)
    monkeypatch.setattr(representation, "EDGE_CHUNK_BYTES", 3e4)
    monkeypatch.setattr(
        message_passing, "sliced_edges", lambda *args: sliced_edges(*args[:-1], compiled=True)
    )  # the layer passes compiled=torch.compiler.is_compiling() last
    sliced = model(**inputs, compute_stress=True)
    for key in ("energy", "forces", "stress"):
        assert_close(sliced[key], expected[key], torch.float64)
