"""ViSNet representation: embeddings followed by a stack of ViS-MP layers."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visnet.model.embedding import EdgeEmbedding, NeighborEmbedding
from visnet.model.geometry import EdgeGeometry, num_direction_units
from visnet.model.message_passing import ViSMPLayer
from visnet.model.normalization import VecLayerNorm
from visnet.model.norms import VECTOR_NORM_EPS
from visnet.model.radial import RBF_CLASSES, make_cutoff

# Inference on systems whose per-edge activations would exceed this (bytes) processes the edges of
# each layer in slices, recomputed in the backward pass: peak memory grows with the system, not with
# E x M x H per layer. Frozen weights (the resolver's models, compiled and exported forms) go through
# the sliced-edge operator (``visnet.model.sliced_edges``, ``message_passing.SLICE_EDGES`` edges per
# slice); weights that need gradients through checkpointed slices of about this many bytes.
# Training (double backward) never slices.
EDGE_CHUNK_BYTES = 5e8
# Activations autograd keeps per edge and layer, in units of H values: ~24 (E, H)-sized tensors
# (attention, gates, messages, edge-update operands) plus ~6 (E, M, H) ones; ~37 measured for lmax 1.
SCALAR_ACTIVATIONS_PER_EDGE = 24
VECTOR_ACTIVATIONS_PER_EDGE = 6


class ViSNetRepresentation(nn.Module):
    """Scalar (N, H) and vector (N, M, H) atom features from atomic numbers and edge geometry.

    Args:
        hidden_channels: H.
        num_layers: number of ViS-MP layers.
        num_rbf: K radial basis functions.
        rbf_type: "expnorm" (default, as the paper) or "gauss".
        trainable_rbf: trainable basis parameters.
        cutoff: Å.
        lmax: degree of the direction units (1 or 2); M = (lmax+1)^2 − 1.
        num_heads: attention heads.
        vecnorm_type: "none", "max_min" or "rms".
        trainable_vecnorm: trainable VecLayerNorm weights.
        max_z: size of the element tables (atomic numbers 1..max_z−1).
        vertex: PyG's vertex edge update.
        vector_cutoff: cutoff on vector messages (energy continuous at r_c).
        vector_norm_eps: smoothing radius of the vector norms in VecLayerNorm (0: exact).
        cutoff_type: envelope of every cutoff-weighted term (attention, vector messages, radial
            basis, neighbour embedding): "cosine" (paper, PyG) or "polynomial" (C2 at r_c).
    """

    def __init__(
        self,
        hidden_channels: int = 128,
        num_layers: int = 6,
        num_rbf: int = 32,
        rbf_type: str = "expnorm",
        trainable_rbf: bool = False,
        cutoff: float = 5.0,
        lmax: int = 1,
        num_heads: int = 8,
        vecnorm_type: str | None = None,
        trainable_vecnorm: bool = False,
        max_z: int = 100,
        vertex: bool = False,
        vector_cutoff: bool = True,
        vector_norm_eps: float = VECTOR_NORM_EPS,
        cutoff_type: str = "cosine",
    ) -> None:
        super().__init__()
        if lmax not in (1, 2):
            raise ValueError(f"lmax must be 1 or 2, got {lmax}")
        if rbf_type not in RBF_CLASSES:
            raise ValueError(f"rbf_type must be one of {sorted(RBF_CLASSES)}, got {rbf_type!r}")
        self.hidden_channels = hidden_channels
        self.num_vectors = num_direction_units(lmax)
        self.embedding = nn.Embedding(max_z, hidden_channels)
        self.cutoff_fn = make_cutoff(cutoff_type, cutoff)
        self.distance_expansion = RBF_CLASSES[rbf_type](cutoff, num_rbf, trainable_rbf, cutoff_type)
        self.neighbor_embedding = NeighborEmbedding(hidden_channels, num_rbf, max_z)
        self.edge_embedding = EdgeEmbedding(num_rbf, hidden_channels)
        self.vis_mp_layers = nn.ModuleList(
            ViSMPLayer(
                num_heads,
                hidden_channels,
                vecnorm_type,
                trainable_vecnorm,
                last_layer=(i == num_layers - 1),
                vertex=vertex,
                vector_cutoff=vector_cutoff,
                vector_norm_eps=vector_norm_eps,
            )
            for i in range(num_layers)
        )
        # None: slice the edges of large systems (``edge_chunk``); True / False: always / never.
        self.slice_edges: bool | None = None
        self.out_norm = nn.LayerNorm(hidden_channels)
        self.vec_out_norm = VecLayerNorm(
            hidden_channels, trainable=trainable_vecnorm, norm_type=vecnorm_type, norm_eps=vector_norm_eps
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.embedding.reset_parameters()
        self.distance_expansion.reset_parameters()
        self.neighbor_embedding.reset_parameters()
        self.edge_embedding.reset_parameters()
        for layer in self.vis_mp_layers:
            layer.reset_parameters()
        self.out_norm.reset_parameters()
        self.vec_out_norm.reset_parameters()

    def forward(
        self, z: Tensor, geometry: EdgeGeometry, stage_edges: tuple[int, ...] | None = None
    ) -> tuple[Tensor, Tensor]:
        """z: (N,) atomic numbers; geometry of a graph that includes one self-loop per atom.

        ``stage_edges`` (num_layers + 1,): the neighbour embedding runs on the first
        ``stage_edges[0]`` edges only, the edge embedding and layer k on the first ``stage_edges[k]``
        (a ``visnet.model.staged.StagedNeighborList``, eager only): only its target atoms' features
        are then exact. None: every stage on every edge.

        Returns:
            x (N, H) scalar and vec (N, M, H) vector features.

        Raises:
            ValueError: ``stage_edges`` does not have num_layers + 1 entries.
        """
        edge_index, r_ij, d_ij = geometry.edge_index, geometry.distances, geometry.directions
        rbf = self.distance_expansion(r_ij)
        cutoff = self.cutoff_fn(r_ij)
        if torch.compiler.is_compiling():
            # visnet.accel.compile checks that the N self-loops come last (as radius_graph builds them):
            # a slice, where a boolean index would be a data-dependent shape (a graph break).
            not_loop = slice(0, edge_index.size(1) - z.size(0))
        else:
            not_loop = ~geometry.self_loop
        chunk = self.edge_chunk(edge_index.size(1), rbf.dtype)
        x = self.embedding(z)
        if stage_edges is None:
            x = self.neighbor_embedding(z, x, edge_index[:, not_loop], rbf[not_loop], cutoff[not_loop], chunk)
            f_ij = self.edge_embedding(edge_index, rbf, x, chunk)
        else:
            if len(stage_edges) != len(self.vis_mp_layers) + 1:
                raise ValueError(
                    f"stage_edges has {len(stage_edges)} entries; this model has "
                    f"{len(self.vis_mp_layers)} layers, so it needs {len(self.vis_mp_layers) + 1}"
                )
            first, second = stage_edges[0], stage_edges[1]
            loop = not_loop[:first]
            x = self.neighbor_embedding(
                z, x, edge_index[:, :first][:, loop], rbf[:first][loop], cutoff[:first][loop], chunk
            )
            f_ij = self.edge_embedding(edge_index[:, :second], rbf[:second], x, chunk)
        vec = torch.zeros(x.size(0), self.num_vectors, x.size(1), dtype=x.dtype, device=x.device)
        for k, layer in enumerate(self.vis_mp_layers, start=1):
            if stage_edges is not None:  # the stages' edges are nested prefixes: cut to this layer's
                n = stage_edges[k]
                edge_index, cutoff, f_ij, d_ij = edge_index[:, :n], cutoff[:n], f_ij[:n], d_ij[:n]
            dx, dvec, df_ij = layer(
                x, vec, edge_index, cutoff, f_ij, d_ij, edge_chunk=chunk, recompute=chunk is not None
            )
            x = x + dx
            vec = vec + dvec
            if df_ij is not None:
                f_ij = f_ij + df_ij
        return self.out_norm(x), self.vec_out_norm(vec)

    def edge_chunk(self, num_edges: int, dtype: torch.dtype, budget: float | None = None) -> int | None:
        """Edges per slice when the edge activations of a call (bytes, as counted here) would exceed
        ``budget`` (default ``EDGE_CHUNK_BYTES``), else None. Never in training, where forces need the
        double-backward graph. ``slice_edges`` True or False overrides the size test (``visnet.accel.export``
        traces one graph of each kind). Under ``torch.compile`` the size test is a guard: systems
        above the budget get a graph of their own, which slices."""
        if self.training or self.slice_edges is False:
            return None
        chunk = self.slice_threshold(dtype, budget)
        if self.slice_edges is None and num_edges <= chunk:
            return None
        return chunk

    def slice_threshold(self, dtype: torch.dtype, budget: float | None = None) -> int:
        """Edges whose activations (as counted here) fill ``budget`` bytes (default ``EDGE_CHUNK_BYTES``):
        calls with more edges slice them (``edge_chunk``)."""
        per_edge = SCALAR_ACTIVATIONS_PER_EDGE + VECTOR_ACTIVATIONS_PER_EDGE * self.num_vectors
        per_edge *= self.hidden_channels * torch.empty((), dtype=dtype).element_size()
        budget = EDGE_CHUNK_BYTES if budget is None else budget
        return max(1, int(budget // per_edge))
