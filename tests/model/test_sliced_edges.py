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


# ----------------------------------------------------------------------------- derivatives of the operators
def tiny_layer_inputs(num_nodes_tensors: int) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """A random graph of 3 atoms and 7 edges (repeats and a self-loop included), H 4, M 3, 2 heads:
    edge_index, the differentiable inputs (cutoff, f_ij, d_ij, nodes) and the weights, float64."""
    generator = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_(True)

    edge_index = torch.randint(0, 3, (2, 7), generator=generator)
    edge_index[:, 0] = 2  # a self-loop
    heads = [randn(3, 2, 2) for _ in range(3)]
    vectors = [randn(3, 3, 4) for _ in range(num_nodes_tensors - 3)]
    cutoff = torch.rand(7, generator=generator, dtype=torch.float64).requires_grad_(True)
    inputs = [cutoff, randn(7, 4), randn(7, 3), *heads, *vectors]
    weights = [randn(8, 4), randn(8), randn(8, 4), randn(8)]
    if num_nodes_tensors > 4:
        weights += [randn(8 if num_nodes_tensors == 8 else 4, 4), randn(8 if num_nodes_tensors == 8 else 4)]
    return edge_index, inputs, [w.detach() for w in weights]


@pytest.mark.parametrize(
    ("num_nodes_tensors", "vector_cutoff"),
    [(4, True), (6, True), (6, False), (8, True)],
    ids=["last-layer", "layer", "layer-plain", "vertex"],
)
def test_sliced_edges_gradients_and_second_derivatives(num_nodes_tensors: int, vector_cutoff: bool) -> None:
    """First and second derivatives of the operator (slices of 3 edges) against finite differences
    (gradcheck, float64): the backward and its own backward (Hessians, force losses) are exact."""
    edge_index, inputs, weights = tiny_layer_inputs(num_nodes_tensors)

    def layer(cutoff: torch.Tensor, f_ij: torch.Tensor, d_ij: torch.Tensor, *nodes: torch.Tensor) -> tuple:
        out = sliced_edges(edge_index, cutoff, f_ij, d_ij, list(nodes), weights, vector_cutoff, 3)
        return tuple(t for t in out if t is not None)

    assert torch.autograd.gradcheck(layer, tuple(inputs))
    assert torch.autograd.gradgradcheck(layer, tuple(inputs))


@pytest.mark.parametrize("kind", ["neighbor_embedding", "edge_embedding"])
def test_sliced_embeddings_equal_unsliced_and_differentiate_twice(kind: str) -> None:
    """The embeddings' sliced forms equal their whole-edge-set maths, with exact first and second
    derivatives (gradcheck, float64, slices of 4 of 11 edges)."""
    from visnet.model.embedding import edge_features, neighbor_messages
    from visnet.model.scatter import scatter_sum
    from visnet.model.sliced_map import sliced_map

    generator = torch.Generator().manual_seed(3)
    edge_index = torch.randint(0, 5, (2, 11), generator=generator)
    rbf, cutoff, nodes = (torch.rand(*s, generator=generator, dtype=torch.float64) for s in ((11, 6), (11,), (5, 4)))
    weights = [torch.randn(4, 6, generator=generator, dtype=torch.float64), torch.randn(4, dtype=torch.float64)]
    src, dst = edge_index
    if kind == "neighbor_embedding":
        args, roles = [rbf, cutoff, nodes], ("ees", "d")
        expected = scatter_sum(neighbor_messages(weights, rbf, cutoff, nodes[src])[0], dst, 5)
    else:
        args, roles = [rbf, nodes, nodes], ("esd", "e")
        expected = edge_features(weights, rbf, nodes[src], nodes[dst])[0]
    (got,) = sliced_map(edge_index, args, weights, kind, *roles, chunk=4)
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=1e-14)
    inputs = tuple(t.clone().requires_grad_(True) for t in args)

    def sliced(*tensors: torch.Tensor) -> torch.Tensor:
        return sliced_map(edge_index, list(tensors), weights, kind, *roles, chunk=4)[0]

    assert torch.autograd.gradcheck(sliced, inputs)
    assert torch.autograd.gradgradcheck(sliced, inputs)


def test_sliced_model_second_derivatives_equal_unsliced(monkeypatch: pytest.MonkeyPatch) -> None:
    """A force loss differentiated in the positions (the double backward of force training, or a
    Hessian-vector product) through the sliced layers and embeddings equals the unsliced model's."""
    model = frozen_model(torch.float64)
    inputs = water_like_box(torch.float64)
    batch = torch.zeros(24, dtype=torch.long)
    neighbors = visnet.neighbors.radius_graph(
        inputs["pos"], model.cutoff, batch, inputs["cell"], inputs["pbc"], self_loops=True
    )

    def force_loss_gradient() -> tuple[torch.Tensor, torch.Tensor]:
        pos = inputs["pos"].clone().requires_grad_(True)
        energy = model.energy(inputs["z"], pos, inputs["cell"], batch=batch, neighbors=neighbors, num_graphs=1)
        (forces,) = torch.autograd.grad(-energy["energy"].sum(), pos, create_graph=True)
        (gradient,) = torch.autograd.grad((forces**2).sum(), pos)
        return forces.detach(), gradient

    expected = force_loss_gradient()
    monkeypatch.setattr(representation, "EDGE_CHUNK_BYTES", 3e4)
    assert model.representation_model.edge_chunk(neighbors.edge_index.size(1), torch.float64) is not None
    for got, want in zip(force_loss_gradient(), expected, strict=True):
        assert_close(got, want, torch.float64)


def test_sliced_backward_keeps_no_edge_activation_but_edge_features(monkeypatch: pytest.MonkeyPatch) -> None:
    """What autograd keeps for the forces of a sliced call: per edge only the layers' edge features
    f_ij (one (E, H) per layer), the radial basis (E, K) and geometry; no (E, H) activation of the
    embeddings and no (E, M, H) one (those cost ~5 (E, H) tensors at 10k atoms: 1.4 GB)."""
    model = frozen_model(torch.float32)
    rep = model.representation_model
    inputs = water_like_box(torch.float32)
    monkeypatch.setattr(representation, "EDGE_CHUNK_BYTES", 3e4)
    batch = torch.zeros(24, dtype=torch.long)
    neighbors = visnet.neighbors.radius_graph(
        inputs["pos"], model.cutoff, batch, inputs["cell"], inputs["pbc"], self_loops=True
    )
    num_edges, hidden = neighbors.edge_index.size(1), rep.hidden_channels
    saved: dict[int, torch.Tensor] = {}

    def keep(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t
        return t

    pos = inputs["pos"].clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        model.energy(inputs["z"], pos, inputs["cell"], batch=batch, neighbors=neighbors, num_graphs=1)
    edge_features = [t for t in saved.values() if tuple(t.shape) == (num_edges, hidden)]
    assert len(edge_features) == len(rep.vis_mp_layers)  # f_ij of each layer, nothing else (E, H)
    wide = [t.shape for t in saved.values() if t.dim() > 1 and t.size(0) >= num_edges - 24 and t[0].numel() > hidden]
    assert wide == []  # no (E, M, H) or wider per-edge tensor
