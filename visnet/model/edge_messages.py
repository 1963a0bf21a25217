"""The per-edge maths of one ViS-MP layer as pure functions of gathered tensors and weights.

``ViSMPLayer`` gathers its per-node tensors onto the edges and calls these functions; the sliced
edge operator (``visnet.model.sliced_edges``) calls the same functions slice by slice, so the
two paths share one definition of the messages. Shapes: e edges of the slice, H channels, M
direction units, ``heads`` attention heads of H / heads channels each.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from visnet.model.geometry import rejection_dot

# Which end of the edge each per-node tensor of a layer is gathered from, in the order the layer
# passes them: q, k, v, vec and, except in the last layer, w_trg, w_src and (vertex) t_trg, t_src.
GATHER_BY = ("dst", "src", "src", "src", "dst", "src", "dst", "dst")


def gather_nodes(nodes: list[Tensor] | tuple[Tensor, ...], src: Tensor, dst: Tensor) -> tuple[Tensor, ...]:
    """The per-node tensors (N, ...) in ``GATHER_BY`` order gathered onto edges (e, ...) by src/dst (e,)."""
    ends = {"src": src, "dst": dst}
    return tuple(t.index_select(0, ends[end]) for t, end in zip(nodes, GATHER_BY))


def edge_outputs(
    gathered: tuple[Tensor, ...],
    cutoff: Tensor,
    f_ij: Tensor,
    d_ij: Tensor,
    weights: list[Tensor],
    vector_cutoff: bool,
) -> tuple[Tensor, ...]:
    """msg (e, H), vec_msg (e, M, H) and, except in the last layer (4 gathered tensors), df (e, H).

    ``gathered`` as ``gather_nodes`` returns it; ``weights`` as ``sliced_edges`` takes them: dk|dv
    weight and bias, s weight and bias and, except in the last layer, the f projection's.
    """
    msg, vec_msg = edge_messages(*gathered[:4], cutoff, f_ij, d_ij, *weights[:4], vector_cutoff)
    if len(gathered) == 4:
        return msg, vec_msg
    return msg, vec_msg, edge_update(f_ij, d_ij, weights[4], weights[5], *gathered[4:])


def edge_messages(
    q_i: Tensor,
    k_j: Tensor,
    v_j: Tensor,
    vec_j: Tensor,
    cutoff: Tensor,
    f_ij: Tensor,
    d_ij: Tensor,
    dkv_weight: Tensor,
    dkv_bias: Tensor,
    s_weight: Tensor,
    s_bias: Tensor,
    vector_cutoff: bool,
) -> tuple[Tensor, Tensor]:
    """Scalar and vector messages of e edges j → i (before they are summed onto i).

    Args:
        q_i: (e, heads, H/heads) queries of the centres. k_j, v_j: (e, heads, H/heads) keys and
            values of the neighbours. vec_j: (e, M, H) vector features of the neighbours.
        cutoff: (e,) cutoff weights. f_ij: (e, H) edge features. d_ij: (e, M) direction units.
        dkv_weight, dkv_bias: (2H, H), (2H,) the dk and dv projections, concatenated.
        s_weight, s_bias: (2H, H), (2H,) the s projection.
        vector_cutoff: weight the vector message by the cutoff.

    Returns:
        msg (e, H) and vec_msg (e, M, H).
    """
    hidden = f_ij.size(-1)
    dk, dv = F.silu(F.linear(f_ij, dkv_weight, dkv_bias)).view(-1, 2, *q_i.shape[1:]).unbind(1)
    attn = F.silu((q_i * k_j * dk).sum(dim=-1)) * cutoff.unsqueeze(-1)  # (e, heads)
    msg = (v_j * dv * attn.unsqueeze(-1)).reshape(-1, hidden)
    s1, s2 = torch.split(F.silu(F.linear(msg, s_weight, s_bias)), hidden, dim=-1)
    if vector_cutoff:  # cutoff on the (e, H) gates, not on the (e, M, H) message: same product
        s1 = s1 * cutoff.unsqueeze(-1)
        s2 = s2 * cutoff.unsqueeze(-1)
    vec_msg = torch.addcmul(s2.unsqueeze(1) * d_ij.unsqueeze(-1), vec_j, s1.unsqueeze(1))
    return msg, vec_msg


def edge_update(
    f_ij: Tensor,
    d_ij: Tensor,
    f_weight: Tensor,
    f_bias: Tensor,
    w_trg_i: Tensor,
    w_src_j: Tensor,
    t_trg_i: Tensor | None = None,
    t_src_i: Tensor | None = None,
) -> Tensor:
    """Update (e, H) of the edge features from the rejection dot products of projected vectors.

    Args:
        f_ij: (e, H) edge features. d_ij: (e, M) direction units.
        f_weight, f_bias: (H, H) and (H,), or (2H, H) and (2H,) for the vertex variant.
        w_trg_i, w_src_j: (e, M, H) edge-update projections of the centre's and neighbour's vectors.
        t_trg_i, t_src_i: (e, M, H) PyG's vertex terms (both of the *centre* atom, kept for parity),
            or None.
    """
    w_dot = rejection_dot(w_trg_i, w_src_j, d_ij)
    gate = F.silu(F.linear(f_ij, f_weight, f_bias))
    if t_trg_i is None:
        return gate * w_dot
    f1, f2 = torch.split(gate, f_ij.size(-1), dim=-1)
    return f1 * w_dot + f2 * rejection_dot(t_trg_i, t_src_i, d_ij)
