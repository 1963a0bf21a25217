"""Atom, neighbour and edge embeddings of ViSNet."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from visnet.model.scatter import scatter_sum
from visnet.model.sliced_map import EdgeKind, register_kind, sliced_map


def neighbor_messages(weights: list[Tensor], rbf: Tensor, cutoff: Tensor, emb_j: Tensor) -> tuple[Tensor]:
    """Messages emb(z_j) ⊙ (W rbf + b) f_cut of e edges: rbf (e, K), cutoff (e,), emb_j (e, H);
    weights [W (H, K), b (H,)] -> ((e, H),)."""
    return (emb_j * (F.linear(rbf, weights[0], weights[1]) * cutoff.unsqueeze(-1)),)


def edge_features(weights: list[Tensor], rbf: Tensor, x_j: Tensor, x_i: Tensor) -> tuple[Tensor]:
    """Initial edge features (x_j + x_i) ⊙ (W rbf + b) of e edges: rbf (e, K), x_j, x_i (e, H);
    weights [W (H, K), b (H,)] -> ((e, H),)."""
    return ((x_j + x_i) * F.linear(rbf, weights[0], weights[1]),)


# Sliced forms (visnet.model.sliced_map) of the two embeddings: large systems keep no (E, H)
# activation of them for the backward pass, only rbf (E, K) and per-node tensors.
register_kind(
    "neighbor_embedding",
    EdgeKind(neighbor_messages, lambda inputs, weights, num_edges: [(inputs[2].size(0), weights[0].size(0))]),
)
register_kind(
    "edge_embedding",
    EdgeKind(edge_features, lambda inputs, weights, num_edges: [(num_edges, weights[0].size(0))]),
)
# Edges per slice of the embeddings (each slice's work is small: larger slices than the layers').
EMBEDDING_SLICE_EDGES = 16384


def _frozen(linear: nn.Linear) -> bool:
    """The layer's weights take no gradient in this call (the sliced forms compute none)."""
    return not (torch.is_grad_enabled() and any(p.requires_grad for p in linear.parameters()))


class NeighborEmbedding(nn.Module):
    """Mixes each atom's embedding with the cutoff-weighted embeddings of its neighbours.

    x_i' = W_c [x_i, Σ_j emb(z_j) ⊙ (W_d rbf(r_ij)) f_cut(r_ij)]   (self-loops excluded)

    Args:
        hidden_channels: H.
        num_rbf: K, size of the radial basis.
        max_z: size of the element embedding table.
    """

    def __init__(self, hidden_channels: int, num_rbf: int, max_z: int = 100) -> None:
        super().__init__()
        self.embedding = nn.Embedding(max_z, hidden_channels)
        self.distance_proj = nn.Linear(num_rbf, hidden_channels)
        self.combine = nn.Linear(2 * hidden_channels, hidden_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.embedding.reset_parameters()
        nn.init.xavier_uniform_(self.distance_proj.weight)
        nn.init.xavier_uniform_(self.combine.weight)
        nn.init.zeros_(self.distance_proj.bias)
        nn.init.zeros_(self.combine.bias)

    def forward(
        self, z: Tensor, x: Tensor, edge_index: Tensor, rbf: Tensor, cutoff: Tensor, edge_chunk: int | None = None
    ) -> Tensor:
        """z (N,), x (N, H), edge_index (2, E) without self-loops, rbf (E, K), cutoff (E,) -> (N, H).
        ``edge_chunk``: edges per slice through ``sliced_map`` when the weights are frozen (None: all at once)."""
        emb = self.embedding(z)
        weights = [self.distance_proj.weight, self.distance_proj.bias]
        if edge_chunk and _frozen(self.distance_proj):
            chunk = min(edge_chunk, EMBEDDING_SLICE_EDGES)
            (neighbours,) = sliced_map(edge_index, [rbf, cutoff, emb], weights, "neighbor_embedding", "ees", "d", chunk)
        else:
            (messages,) = neighbor_messages(weights, rbf, cutoff, emb.index_select(0, edge_index[0]))
            neighbours = scatter_sum(messages, edge_index[1], x.size(0))
        return self.combine(torch.cat([x, neighbours], dim=-1))


class EdgeEmbedding(nn.Module):
    """Initial edge features f_ij = (x_i + x_j) ⊙ W rbf(r_ij).

    Args:
        num_rbf: K.
        hidden_channels: H.
    """

    def __init__(self, num_rbf: int, hidden_channels: int) -> None:
        super().__init__()
        self.edge_proj = nn.Linear(num_rbf, hidden_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.edge_proj.weight)
        nn.init.zeros_(self.edge_proj.bias)

    def forward(self, edge_index: Tensor, rbf: Tensor, x: Tensor, edge_chunk: int | None = None) -> Tensor:
        """edge_index (2, E), rbf (E, K), x (N, H) -> (E, H). ``edge_chunk``: edges per slice through
        ``sliced_map`` when the weights are frozen (None: all at once)."""
        weights = [self.edge_proj.weight, self.edge_proj.bias]
        if edge_chunk and _frozen(self.edge_proj):
            chunk = min(edge_chunk, EMBEDDING_SLICE_EDGES)
            return sliced_map(edge_index, [rbf, x, x], weights, "edge_embedding", "esd", "e", chunk)[0]
        return edge_features(weights, rbf, x.index_select(0, edge_index[0]), x.index_select(0, edge_index[1]))[0]
