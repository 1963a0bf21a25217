"""The edge work of one ViS-MP layer as one operator that loops over edge slices, with its own backward.

``sliced_edges(...)`` gathers the per-node tensors onto a slice of edges, computes the slice's
messages and edge updates (``visnet.model.edge_messages``), sums the messages onto the centre atoms
and moves to the next slice; its backward recomputes each slice and takes its vector-Jacobian
product (``torch.func.vjp``), accumulating the node gradients with ``index_add``. So no (E, M, H)
tensor ever exists and memory grows with atoms and edges, not with edges x M x H.

Both directions are ``torch.library`` custom operators, opaque to ``torch.compile`` and
``torch.export``: a compiled or exported graph holds one node per layer and direction however many
slices a system needs (AOTInductor calls them back in Python: a package using them needs ``visnet``
imported, which loading it through ``visnet.load_exported`` does). No weight gradients: the operator
serves forces and stress (inputs' gradients); the caller uses it only with frozen weights.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from visnet.model.edge_messages import GATHER_BY, edge_outputs, gather_nodes
from visnet.model.sliced_map import EdgeKind, register_kind, sliced_map

__all__ = ["sliced_edges"]


def _padded(t: Tensor, rows: int) -> Tensor:
    """A new tensor: ``t`` (e, ...) with zero rows appended up to ``rows`` (always a copy, never a
    view). The compiled kernels still recompile once, on the second call of a compiled model, for
    a dispatch-key guard on their inputs (seconds; stable after that)."""
    return torch.cat([t, t.new_zeros(rows - t.size(0), *t.shape[1:])])


def _slices(
    edge_index: Tensor, edges: tuple[Tensor, ...], chunk: int, pad: bool
) -> Iterator[tuple[slice, Tensor, Tensor, tuple[Tensor, ...]]]:
    """(slice, src, dst, per-edge tensors) of each slice of ``chunk`` edges; with ``pad`` the last
    one is padded to ``chunk`` rows (edges 0 → 0 with zero features: finite, and dropped by the
    caller), so a compiled kernel sees one shape."""
    chunk = max(1, chunk)
    for start in range(0, edge_index.size(1), chunk):
        part = slice(start, min(start + chunk, edge_index.size(1)))
        index, per_edge = edge_index[:, part], tuple(t[part] for t in edges)
        if pad:
            index, per_edge = _padded(index.T, chunk).T, tuple(_padded(t, chunk) for t in per_edge)
        yield part, index[0], index[1], per_edge


def _slice_vjp(
    gathered: tuple[Tensor, ...],
    cutoff: Tensor,
    f_ij: Tensor,
    d_ij: Tensor,
    weights: list[Tensor],
    vector_cutoff: bool,
    cotangents: tuple[Tensor, ...],
) -> tuple[Tensor, ...]:
    """Gradients of a slice's outputs (``edge_outputs``) times ``cotangents``, with respect to the
    gathered tensors, cutoff, f_ij and d_ij (in that order), by recomputing the slice."""
    num = len(gathered)

    def outputs(*args: Tensor) -> tuple[Tensor, ...]:
        return edge_outputs(args[:num], *args[num:], weights, vector_cutoff)

    _, vjp = torch.func.vjp(outputs, *gathered, cutoff, f_ij, d_ij)
    return vjp(cotangents)


@functools.cache
def _kernels(compiled: bool) -> tuple[Callable[..., tuple[Tensor, ...]], Callable[..., tuple[Tensor, ...]]]:
    """The slice functions (outputs, vjp): eager, or compiled by inductor for the fixed slice shape
    (``compiled``: inside a compiled or exported model, where slices are padded to one size)."""
    if not compiled:
        return edge_outputs, _slice_vjp
    return (
        torch.compile(edge_outputs, dynamic=False, fullgraph=True),
        torch.compile(_slice_vjp, dynamic=False, fullgraph=True),
    )


@torch.library.custom_op("visnet::sliced_edges", mutates_args=())
def _sliced_edges(
    edge_index: Tensor,
    cutoff: Tensor,
    f_ij: Tensor,
    d_ij: Tensor,
    nodes: list[Tensor],
    weights: list[Tensor],
    vector_cutoff: bool,
    chunk: int,
    compiled: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    num_nodes, hidden = nodes[0].size(0), f_ij.size(-1)
    x_agg = f_ij.new_zeros(num_nodes, hidden)
    vec_agg = f_ij.new_zeros(num_nodes, d_ij.size(-1), hidden)
    df_ij = f_ij.new_empty(f_ij.shape if len(nodes) > 4 else (0,))
    kernel = _kernels(compiled)[0]
    for part, src, dst, edges in _slices(edge_index, (cutoff, f_ij, d_ij), chunk, compiled):
        out = kernel(gather_nodes(nodes, src, dst), *edges, weights, vector_cutoff)
        rows = part.stop - part.start
        x_agg.index_add_(0, dst[:rows], out[0][:rows])
        vec_agg.index_add_(0, dst[:rows], out[1][:rows])
        if len(out) == 3:
            df_ij[part] = out[2][:rows]
    return x_agg, vec_agg, df_ij


@_sliced_edges.register_fake
def _(edge_index, cutoff, f_ij, d_ij, nodes, weights, vector_cutoff, chunk, compiled):
    num_nodes, hidden = nodes[0].size(0), f_ij.size(-1)
    df_ij = f_ij.new_empty(f_ij.shape if len(nodes) > 4 else (0,))
    return f_ij.new_empty(num_nodes, hidden), f_ij.new_empty(num_nodes, d_ij.size(-1), hidden), df_ij


@torch.library.custom_op("visnet::sliced_edges_backward", mutates_args=())
def _sliced_edges_backward(
    grad_x: Tensor,
    grad_vec: Tensor,
    grad_df: Tensor,
    edge_index: Tensor,
    cutoff: Tensor,
    f_ij: Tensor,
    d_ij: Tensor,
    nodes: list[Tensor],
    weights: list[Tensor],
    vector_cutoff: bool,
    chunk: int,
    compiled: bool,
) -> list[Tensor]:
    grad_cutoff, grad_f, grad_d = torch.empty_like(cutoff), torch.empty_like(f_ij), torch.empty_like(d_ij)
    grad_nodes = [torch.zeros_like(t) for t in nodes]
    kernel = _kernels(compiled)[1]
    for part, src, dst, edges in _slices(edge_index, (cutoff, f_ij, d_ij), chunk, compiled):
        cotangents = (grad_x.index_select(0, dst), grad_vec.index_select(0, dst))
        if len(nodes) > 4:
            cotangents += (_padded(grad_df[part], chunk) if compiled else grad_df[part],)
        grads = kernel(gather_nodes(nodes, src, dst), *edges, weights, vector_cutoff, cotangents)
        rows = part.stop - part.start
        ends = {"src": src[:rows], "dst": dst[:rows]}
        for grad_node, grad, end in zip(grad_nodes, grads[: len(nodes)], GATHER_BY):
            grad_node.index_add_(0, ends[end], grad[:rows])
        grad_cutoff[part], grad_f[part], grad_d[part] = (g[:rows] for g in grads[len(nodes) :])
    return [grad_cutoff, grad_f, grad_d, *grad_nodes]


@_sliced_edges_backward.register_fake
def _(grad_x, grad_vec, grad_df, edge_index, cutoff, f_ij, d_ij, nodes, weights, vector_cutoff, chunk, compiled):
    return [torch.empty_like(cutoff), torch.empty_like(f_ij), torch.empty_like(d_ij)] + [
        torch.empty_like(t) for t in nodes
    ]


def _messages(
    vector_cutoff: bool, weights: list[Tensor], cutoff: Tensor, f_ij: Tensor, d_ij: Tensor, *gathered: Tensor
):
    """``edge_outputs`` with the per-edge inputs first: the slice function of ``sliced_map``'s kinds
    "edge_messages" (vector_cutoff True) and "edge_messages_plain"."""
    return edge_outputs(gathered, cutoff, f_ij, d_ij, weights, vector_cutoff)


def _message_shapes(inputs: list[Tensor], weights: list[Tensor], num_edges: int) -> list[tuple[int, ...]]:
    f_ij, d_ij, num_nodes = inputs[1], inputs[2], inputs[3].size(0)
    shapes = [(num_nodes, f_ij.size(-1)), (num_nodes, d_ij.size(-1), f_ij.size(-1))]
    return shapes + [tuple(f_ij.shape)] * (len(inputs) > 7)


for _name, _vector_cutoff in (("edge_messages", True), ("edge_messages_plain", False)):
    register_kind(_name, EdgeKind(functools.partial(_messages, _vector_cutoff), _message_shapes))


def _message_roles(num_nodes: int) -> tuple[str, str]:
    """``sliced_map`` roles of the messages: inputs cutoff, f_ij, d_ij, nodes; outputs x_agg, vec_agg (, df_ij)."""
    return "eee" + "".join(end[0] for end in GATHER_BY[:num_nodes]), "dd" + "e" * (num_nodes > 4)


def _setup_backward_context(ctx, inputs, output) -> None:  # noqa: ANN001
    grad_x, grad_vec, grad_df, edge_index, cutoff, f_ij, d_ij, nodes, weights, vector_cutoff, chunk, _ = inputs
    ctx.save_for_backward(grad_x, grad_vec, grad_df, edge_index, cutoff, f_ij, d_ij, *nodes, *weights)
    ctx.num_nodes, ctx.options = len(nodes), (vector_cutoff, chunk)


def _double_backward(ctx, grads: list[Tensor]) -> tuple:  # noqa: ANN001
    """Derivative of the backward (Hessians, force losses through frozen weights): the second-order
    map of ``sliced_map`` over the same slices (eager slice kernels)."""
    grad_x, grad_vec, grad_df, edge_index, cutoff, f_ij, d_ij, *rest = ctx.saved_tensors
    nodes, weights = rest[: ctx.num_nodes], list(rest[ctx.num_nodes :])
    vector_cutoff, chunk = ctx.options
    in_roles, out_roles = _message_roles(len(nodes))
    upstream = [grad_x, grad_vec] + [grad_df] * (len(nodes) > 4)
    inputs = [cutoff, f_ij, d_ij, *nodes, *upstream]
    cotangents = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, inputs, strict=False)]
    kind = "edge_messages" if vector_cutoff else "edge_messages_plain"
    out = sliced_map(edge_index, inputs + cotangents, weights, kind, in_roles, out_roles, chunk, order=2)
    num = 3 + len(nodes)
    grad_upstream = out[num:] + [None] * (len(nodes) <= 4)
    return (*grad_upstream, None, out[0], out[1], out[2], out[3:num], [None] * len(weights), None, None, None)


_sliced_edges_backward.register_autograd(_double_backward, setup_context=_setup_backward_context)


def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
    edge_index, cutoff, f_ij, d_ij, nodes, weights, vector_cutoff, chunk, compiled = inputs
    ctx.save_for_backward(edge_index, cutoff, f_ij, d_ij, *nodes, *weights)
    ctx.num_nodes, ctx.options = len(nodes), (vector_cutoff, chunk, compiled)


def _backward(ctx, grad_x: Tensor, grad_vec: Tensor, grad_df: Tensor) -> tuple:  # noqa: ANN001
    edge_index, cutoff, f_ij, d_ij, *rest = ctx.saved_tensors
    nodes, weights = rest[: ctx.num_nodes], rest[ctx.num_nodes :]
    grads = _sliced_edges_backward(
        grad_x, grad_vec, grad_df, edge_index, cutoff, f_ij, d_ij, nodes, weights, *ctx.options
    )
    return None, grads[0], grads[1], grads[2], list(grads[3:]), [None] * len(weights), None, None, None


_sliced_edges.register_autograd(_backward, setup_context=_setup_context)


def sliced_edges(
    edge_index: Tensor,
    cutoff: Tensor,
    f_ij: Tensor,
    d_ij: Tensor,
    nodes: list[Tensor],
    weights: list[Tensor],
    vector_cutoff: bool,
    chunk: int,
    compiled: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Aggregated messages and edge updates of one layer, ``chunk`` edges at a time.

    Args:
        edge_index: (2, E) | row 0 = neighbour j, row 1 = centre i.
        cutoff: (E,) cutoff weights. f_ij: (E, H) edge features. d_ij: (E, M) direction units.
        nodes: per-node tensors in ``GATHER_BY`` order: q, k, v (N, heads, H/heads), vec (N, M, H)
            and, except in the last layer, w_trg, w_src (N, M, H) (+ t_trg, t_src for the vertex variant).
        weights: dk|dv weight (2H, H) and bias (2H,), s weight (2H, H) and bias (2H,) and, except in
            the last layer, the f projection's weight and bias.
        vector_cutoff: weight the vector messages by the cutoff.
        chunk: edges per slice (≥ 1).
        compiled: run each slice through kernels compiled by inductor for slices of exactly
            ``chunk`` edges (the last one padded); False: eager slices.

    Returns:
        x_agg (N, H), vec_agg (N, M, H) and df_ij (E, H) (None in the last layer).

    Raises:
        ValueError: a weight requires grad while grad mode is on (the operator has no weight
            gradients: freeze the weights, or use the checkpointed slices of ``ViSMPLayer``).
    """
    if torch.is_grad_enabled() and any(w.requires_grad for w in weights):
        raise ValueError("sliced_edges computes no weight gradients: call it with frozen weights")
    x_agg, vec_agg, df_ij = _sliced_edges(
        edge_index, cutoff, f_ij, d_ij, nodes, weights, vector_cutoff, chunk, compiled
    )
    return x_agg, vec_agg, df_ij if len(nodes) > 4 else None
