"""Per-layer attention weights of every edge, read from a ViSNet with forward hooks.

A ViS-MP layer weighs the scalar message of edge j → i (per head h) by

    a_ij,h = SiLU(Σ_c q_i,hc k_j,hc dk_ij,hc) · φ(r_ij),

with q = W_q LN(x), k = W_k LN(x) of the layer's input features, dk = SiLU(W_dk f_ij) of its edge
features and φ the cutoff envelope. A forward pre-hook on each layer records those inputs during
one plain call (no gradients), and ``attention_weights`` evaluates a_ij,h from them with the
layer's own modules: the model is not changed and pays nothing when no one asks. Being the
layer's inputs, they are those of the whole edge list, however the layer slices its edges.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["AttentionMaps", "attention_weights", "layer_attention"]


@dataclass(frozen=True)
class AttentionMaps:
    """Attention weights of one structure.

    Attributes:
        edge_index: (2, E) int, self-loops removed; row 0 the neighbour j (source), row 1 the centre i (target).
        weights: (L, E, heads) a_ij,h of each layer (dimensionless; SiLU can make them slightly negative).
        distances: (E,) r_ij in Å.
        self_weights: (L, N, heads) a_ii,h, the weight of each atom's message to itself (its self-loop).
    """

    edge_index: np.ndarray
    weights: np.ndarray
    distances: np.ndarray
    self_weights: np.ndarray

    def strongest(self, count: int, layer: int | None = None) -> list[tuple[int, int, float]]:
        """The ``count`` atom pairs (i < j) with the largest |a| (mean over heads; over layers when
        ``layer`` is None, else of that layer), each pair's stronger direction: [(i, j, a), ...]."""
        weights = self.weights.mean(axis=(0, 2)) if layer is None else self.weights[layer].mean(axis=-1)
        best: dict[tuple[int, int], float] = {}
        for (j, i), a in zip(self.edge_index.T.tolist(), weights.tolist()):
            pair = (min(i, j), max(i, j))
            if abs(a) > abs(best.get(pair, 0.0)):
                best[pair] = a
        ranked = sorted(best.items(), key=lambda item: -abs(item[1]))[:count]
        return [(i, j, a) for (i, j), a in ranked]


def layer_attention(layer: nn.Module, x: Tensor, edge_index: Tensor, cutoff: Tensor, f_ij: Tensor) -> Tensor:
    """(E, heads) attention weights of one ViS-MP layer from its inputs: x (N, H) atom features,
    edge_index (2, E) (row 0 neighbour, row 1 centre), cutoff (E,) envelope, f_ij (E, H) edge features."""
    heads = (-1, layer.num_heads, layer.head_dim)
    h = layer.layernorm(x)
    q, k = layer.q_proj(h).view(heads), layer.k_proj(h).view(heads)
    dk = layer.act(layer.dk_proj(f_ij)).view(heads)
    src, dst = edge_index[0], edge_index[1]
    return layer.act((q.index_select(0, dst) * k.index_select(0, src) * dk).sum(dim=-1)) * cutoff.unsqueeze(-1)


def attention_weights(model: nn.Module, z: Tensor, pos: Tensor, length: float = 1.0) -> AttentionMaps:
    """Every layer's attention weights of one molecule.

    Args:
        model: an eager ViSNet (eval mode).
        z: (N,) atomic numbers. pos: (N, 3) positions in the model's length unit.
        length: Å per model length unit (for ``distances``).
    """
    layers = list(model.representation_model.vis_mp_layers)
    inputs: list[dict[str, Tensor]] = []

    def record(layer: nn.Module, args: tuple, kwargs: dict) -> None:
        inputs.append(inspect.signature(layer.forward).bind(*args, **kwargs).arguments)

    with torch.no_grad():
        model(z, pos, compute_forces=False)  # fills the isolated-atom cache before the hooks listen
    handles = [layer.register_forward_pre_hook(record, with_kwargs=True) for layer in layers]
    try:
        with torch.no_grad():
            model(z, pos, compute_forces=False)
            maps = [
                layer_attention(layer, a["x"], a["edge_index"], a["cutoff"], a["f_ij"])
                for layer, a in zip(layers, inputs)
            ]
    finally:
        for handle in handles:
            handle.remove()
    edge_index = inputs[0]["edge_index"]
    loop = edge_index[0] == edge_index[1]
    self_weights = torch.zeros(len(maps), z.shape[0], maps[0].shape[-1], dtype=torch.float64)
    for k, m in enumerate(maps):
        self_weights[k].index_copy_(0, edge_index[1, loop].cpu(), m[loop].cpu().to(torch.float64))
    edge_index = edge_index[:, ~loop]
    weights = torch.stack([m[~loop] for m in maps]).to(device="cpu", dtype=torch.float64).numpy()
    distances = (pos[edge_index[0]] - pos[edge_index[1]]).norm(dim=-1) * length
    return AttentionMaps(
        edge_index.cpu().numpy(), weights, distances.to(device="cpu", dtype=torch.float64).numpy(), self_weights.numpy()
    )
