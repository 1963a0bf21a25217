"""Vector-scalar interactive message passing (ViS-MP), one layer."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from visnet.model.edge_messages import edge_outputs, gather_nodes
from visnet.model.geometry import vector_self_product
from visnet.model.normalization import VecLayerNorm
from visnet.model.norms import VECTOR_NORM_EPS
from visnet.model.scatter import scatter_sum
from visnet.model.sliced_edges import sliced_edges

# Edges per slice of the sliced-edge operator: small enough for the CPU caches, large enough to
# amortise the per-slice calls. Measured on a 1,029-atom water box (PyG-default config, float32,
# 1 thread, one process, load ~4): eager slice kernels 512 / 2,048 / 8,192 / 32,768 edges took
# 6.0 / 5.5 / 5.5 / 6.4 s; compiled slice kernels 2,048 edges 3.3 s. A GPU needs far larger slices
# to fill it (each slice is ~30 kernel launches): SLICE_EDGES_CUDA, not measured yet.
SLICE_EDGES = 2048
SLICE_EDGES_CUDA = 65536


def fused_linear(x: Tensor, linears: tuple[nn.Linear, ...]) -> Tensor:
    """All ``linears`` of the same input in one matmul: (..., H_in) -> (..., Σ H_out), in order.

    The weights are concatenated at call time, so the parameters (state dict, PyG import) stay the
    separate layers' and gradients flow to each of them. Biases must be all present or all absent.
    """
    weight = torch.cat([lin.weight for lin in linears])
    bias = None if linears[0].bias is None else torch.cat([lin.bias for lin in linears])
    return nn.functional.linear(x, weight, bias)


def _xavier(linear: nn.Linear) -> None:
    nn.init.xavier_uniform_(linear.weight)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


class ViSMPLayer(nn.Module):
    """One ViS-MP layer: residual updates (dx, dvec, df) of scalar, vector and edge features.

    Scalar messages are multi-head attention with edge-feature keys and values; vector messages
    carry the neighbour's vectors and the direction units; scalar→vector (o1, s1, s2) and
    vector→scalar (the angle-like self-product ⟨vec1, vec2⟩) interactions; edges are updated
    through the rejection dot product (dihedral-like), except in the last layer.

    Args:
        num_heads: attention heads (must divide H).
        hidden_channels: H.
        vecnorm_type: "none", "max_min" or "rms" (VecLayerNorm).
        trainable_vecnorm: trainable VecLayerNorm weight.
        last_layer: no edge update.
        vertex: PyG's ``ViS_MP_Vertex`` edge update (adds a second rejection term).
        vector_cutoff: multiply vector messages by the cutoff so energy is continuous at r_c
            (fix over the reference; False reproduces PyG / the official code).
        vector_norm_eps: smoothing radius of VecLayerNorm's norms (0: exact, as the reference).
    """

    def __init__(
        self,
        num_heads: int,
        hidden_channels: int,
        vecnorm_type: str | None,
        trainable_vecnorm: bool,
        last_layer: bool = False,
        vertex: bool = False,
        vector_cutoff: bool = True,
        vector_norm_eps: float = VECTOR_NORM_EPS,
    ) -> None:
        super().__init__()
        if hidden_channels % num_heads != 0:
            raise ValueError(f"hidden_channels ({hidden_channels}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.hidden_channels = hidden_channels
        self.head_dim = hidden_channels // num_heads
        self.last_layer = last_layer
        self.vertex = vertex
        self.vector_cutoff = vector_cutoff

        h = hidden_channels
        self.layernorm = nn.LayerNorm(h)
        self.vec_layernorm = VecLayerNorm(
            h, trainable=trainable_vecnorm, norm_type=vecnorm_type, norm_eps=vector_norm_eps
        )
        self.act = nn.SiLU()
        self.vec_proj = nn.Linear(h, 3 * h, bias=False)
        self.q_proj = nn.Linear(h, h)
        self.k_proj = nn.Linear(h, h)
        self.v_proj = nn.Linear(h, h)
        self.dk_proj = nn.Linear(h, h)
        self.dv_proj = nn.Linear(h, h)
        self.s_proj = nn.Linear(h, 2 * h)
        self.o_proj = nn.Linear(h, 3 * h)
        if not last_layer:
            self.f_proj = nn.Linear(h, 2 * h if vertex else h)
            self.w_src_proj = nn.Linear(h, h, bias=False)
            self.w_trg_proj = nn.Linear(h, h, bias=False)
            if vertex:
                self.t_src_proj = nn.Linear(h, h, bias=False)
                self.t_trg_proj = nn.Linear(h, h, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.layernorm.reset_parameters()
        self.vec_layernorm.reset_parameters()
        for module in self.modules():
            if isinstance(module, nn.Linear):
                _xavier(module)

    def forward(
        self,
        x: Tensor,
        vec: Tensor,
        edge_index: Tensor,
        cutoff: Tensor,
        f_ij: Tensor,
        d_ij: Tensor,
        edge_chunk: int | None = None,
        recompute: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Residual updates of one layer.

        Args:
            x: (N, H) scalar features.
            vec: (N, M, H) vector features.
            edge_index: (2, E) | row 0 = neighbour j, row 1 = centre i.
            cutoff: (E,) cosine-cutoff weights of the edges.
            f_ij: (E, H) edge features.
            d_ij: (E, M) direction units.
            edge_chunk: process the edges in slices of this many (None: all at once).
            recompute: recompute each edge slice in the backward pass instead of storing its
                activations (forces of large systems; not for double backward).

        Returns:
            dx (N, H), dvec (N, M, H), df_ij (E, H) or None in the last layer.
        """
        x = self.layernorm(x)
        vec = self.vec_layernorm(vec)
        vec1, vec2, vec3 = torch.split(self.vec_proj(vec), self.hidden_channels, dim=-1)
        nodes = self._node_projections(x, vec)
        x_agg, vec_agg, df_ij = self._edges(nodes, edge_index, cutoff, f_ij, d_ij, edge_chunk, recompute)
        o1, o2, o3 = torch.split(self.o_proj(x_agg), self.hidden_channels, dim=-1)
        dx = vector_self_product(vec1, vec2) * o2 + o3
        dvec = vec3 * o1.unsqueeze(1) + vec_agg
        return dx, dvec, df_ij

    def _node_projections(self, x: Tensor, vec: Tensor) -> tuple[Tensor, ...]:
        """Per-node tensors the edges gather: q, k, v (N, heads, head_dim), vec and, except in the
        last layer, the bias-free edge-update projections of vec (N, M, H). Projecting per node and
        then gathering equals the reference's gather-then-project, at ~N/E of the cost."""
        heads = (-1, self.num_heads, self.head_dim)
        qkv = fused_linear(x, (self.q_proj, self.k_proj, self.v_proj))
        nodes = tuple(t.view(heads) for t in torch.split(qkv, self.hidden_channels, dim=-1)) + (vec,)
        if self.last_layer:
            return nodes
        edge_projections = (self.w_trg_proj, self.w_src_proj)
        if self.vertex:
            edge_projections += (self.t_trg_proj, self.t_src_proj)
        return nodes + torch.split(fused_linear(vec, edge_projections), self.hidden_channels, dim=-1)

    def edge_weights(self) -> list[Tensor]:
        """The weights of the per-edge maths (``visnet.model.edge_messages.edge_outputs``): dk|dv
        weight (2H, H) and bias (2H,), s weight and bias and, except in the last layer, f's."""
        weights = [
            torch.cat([self.dk_proj.weight, self.dv_proj.weight]),
            torch.cat([self.dk_proj.bias, self.dv_proj.bias]),
            self.s_proj.weight,
            self.s_proj.bias,
        ]
        return weights if self.last_layer else weights + [self.f_proj.weight, self.f_proj.bias]

    def _edges(
        self,
        nodes: tuple[Tensor, ...],
        edge_index: Tensor,
        cutoff: Tensor,
        f_ij: Tensor,
        d_ij: Tensor,
        edge_chunk: int | None,
        recompute: bool,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Aggregated messages (N, H), (N, M, H) and edge updates (E, H), slice by slice: through the
        sliced-edge operator (``visnet.model.sliced_edges``) when the weights need no gradient, else
        in checkpointed slices (eager only)."""
        if not edge_chunk:  # one slice; no loop over a range of the (possibly symbolic) edge count
            return self._edge_slice(edge_index, cutoff, f_ij, d_ij, *nodes)
        weights = self.edge_weights()
        if not (torch.is_grad_enabled() and any(w.requires_grad for w in weights)):
            per_slice = SLICE_EDGES if f_ij.device.type == "cpu" else SLICE_EDGES_CUDA
            chunk, compiled = min(edge_chunk, per_slice), torch.compiler.is_compiling()
            return sliced_edges(
                edge_index, cutoff, f_ij, d_ij, list(nodes), weights, self.vector_cutoff, chunk, compiled
            )
        num_edges = edge_index.size(1)
        chunk = max(1, edge_chunk)
        x_agg = vec_agg = None
        updates = []
        for start in range(0, max(num_edges, 1), chunk):
            part = slice(start, start + chunk)
            args = (edge_index[:, part], cutoff[part], f_ij[part], d_ij[part], *nodes)
            if recompute:
                xa, va, df = checkpoint(self._edge_slice, *args, use_reentrant=False)
            else:
                xa, va, df = self._edge_slice(*args)
            x_agg = xa if x_agg is None else x_agg + xa
            vec_agg = va if vec_agg is None else vec_agg + va
            updates.append(df)
        df_ij = None if self.last_layer else (updates[0] if len(updates) == 1 else torch.cat(updates))
        return x_agg, vec_agg, df_ij

    def _edge_slice(
        self, edge_index: Tensor, cutoff: Tensor, f_ij: Tensor, d_ij: Tensor, *nodes: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Messages of a set of edges summed onto their centre atoms, and those edges' updates."""
        src, dst = edge_index[0], edge_index[1]
        gathered = gather_nodes(nodes, src, dst)
        out = edge_outputs(gathered, cutoff, f_ij, d_ij, self.edge_weights(), self.vector_cutoff)
        num_nodes = nodes[0].size(0)
        x_agg = scatter_sum(out[0], dst, num_nodes)
        vec_agg = scatter_sum(out[1], dst, num_nodes)
        return x_agg, vec_agg, None if self.last_layer else out[2]
