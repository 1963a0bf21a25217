"""Atom, neighbour and edge embeddings of ViSNet."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visnet.model.scatter import scatter_sum


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

    def forward(self, z: Tensor, x: Tensor, edge_index: Tensor, rbf: Tensor, cutoff: Tensor) -> Tensor:
        """z (N,), x (N, H), edge_index (2, E) without self-loops, rbf (E, K), cutoff (E,) -> (N, H)."""
        weight = self.distance_proj(rbf) * cutoff.unsqueeze(-1)
        messages = self.embedding(z).index_select(0, edge_index[0]) * weight
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

    def forward(self, edge_index: Tensor, rbf: Tensor, x: Tensor) -> Tensor:
        """edge_index (2, E), rbf (E, K), x (N, H) -> (E, H)."""
        pair = x.index_select(0, edge_index[0]) + x.index_select(0, edge_index[1])
        return pair * self.edge_proj(rbf)
