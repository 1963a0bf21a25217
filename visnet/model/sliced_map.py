"""Per-edge work in slices as one ``torch.library`` operator of any derivative order: ``sliced_map``.

A *kind* is a pure function of one slice of edges: its inputs are per-node tensors gathered onto
the slice's edges (by the neighbour j, row 0 of ``edge_index``, or the centre i, row 1) and
per-edge tensors cut to the slice; its outputs are summed onto the neighbours or centres, or kept
per edge. ``sliced_map`` runs a kind over the edges a slice at a time, so no whole (E, ...)
temporary of the kind's work exists: memory holds the inputs, the outputs and one slice.

Roles, one letter per tensor: ``s`` gathered from / summed onto the neighbour j, ``d`` the centre i,
``e`` per edge. The vector-Jacobian product of a map is a map of the same form, so the operator's
backward is the operator itself one ``order`` up: the inputs are the primal inputs followed by one
cotangent per output (gathered the way the output was summed), the outputs one gradient per primal
input (summed the way the input was gathered), each slice recomputed and differentiated with
``torch.func.vjp``. Forces, stress and their derivatives (Hessians, force training through frozen
weights) therefore slice at every order. The weights get no gradients: frozen weights only.

The operator is opaque to ``torch.compile`` and ``torch.export`` (one node per call, however many
slices); an AOTInductor package calls it back in Python, which needs ``visnet`` imported. It returns
its outputs as views of one flat buffer (``sliced_map`` unflattens them): inductor's C++ wrapper
crashed on custom operators that return a list of tensors (torch 2.13, CPU).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["EdgeKind", "register_kind", "roles_at", "sliced_map"]

ROLES = "sde"


@dataclass(frozen=True)
class EdgeKind:
    """A per-edge function and the shapes of its outputs.

    Attributes:
        fn: ``fn(weights, *slice_inputs) -> tuple of (e, ...) outputs``, pure, differentiable
            twice or more in the inputs (``torch.func.vjp`` of it is taken per order).
        out_shapes: ``out_shapes(inputs, weights, num_edges) -> [shape, ...]``: the shapes of the
            operator's order-0 outputs (N rows for ``s``/``d`` outputs, E rows for ``e`` ones).
    """

    fn: Callable[..., tuple[Tensor, ...]]
    out_shapes: Callable[[list[Tensor], list[Tensor], int], list[tuple[int, ...]]]


_KINDS: dict[str, EdgeKind] = {}


def register_kind(name: str, kind: EdgeKind) -> None:
    """Make ``kind`` callable by name through ``sliced_map`` (idempotent for one name)."""
    _KINDS[name] = kind


def roles_at(in_roles: str, out_roles: str, order: int) -> tuple[str, str]:
    """Input and output roles of the ``order``-th derivative map of a kind with these order-0 roles:
    inputs = previous inputs + cotangents of the previous outputs; outputs = gradients of the
    previous inputs."""
    for _ in range(order):
        in_roles, out_roles = in_roles + out_roles, in_roles
    return in_roles, out_roles


@functools.cache
def _slice_function(kind: str, order: int, in_roles: str, out_roles: str) -> Callable[..., tuple[Tensor, ...]]:
    """The order-``order`` slice function of ``kind``: order 0 the kind's own, order k the
    vector-Jacobian product of order k − 1 (its primals, then one cotangent per output)."""
    if order == 0:
        return _KINDS[kind].fn
    previous = _slice_function(kind, order - 1, in_roles, out_roles)
    num_primals = len(roles_at(in_roles, out_roles, order - 1)[0])

    def vjp_fn(weights: list[Tensor], *args: Tensor) -> tuple[Tensor, ...]:
        primals, cotangents = args[:num_primals], args[num_primals:]
        _, vjp = torch.func.vjp(lambda *p: tuple(previous(weights, *p)), *primals)
        return tuple(vjp(tuple(cotangents)))

    return vjp_fn


def _output_shapes(
    inputs: list[Tensor], weights: list[Tensor], kind: str, in_roles: str, out_roles: str, order: int, num_edges: int
) -> list[tuple[int, ...]]:
    if order == 0:
        return [tuple(shape) for shape in _KINDS[kind].out_shapes(inputs, weights, num_edges)]
    num_primals = len(roles_at(in_roles, out_roles, order - 1)[0])
    return [tuple(t.shape) for t in inputs[:num_primals]]


def _check(inputs: list[Tensor], kind: str, in_roles: str, out_roles: str, order: int) -> tuple[str, str]:
    if kind not in _KINDS:
        raise ValueError(f"sliced_map: unknown kind {kind!r} (known: {sorted(_KINDS)})")
    if set(in_roles + out_roles) - set(ROLES):
        raise ValueError(f"sliced_map: roles are letters of {ROLES!r}, got {in_roles!r} and {out_roles!r}")
    ins, outs = roles_at(in_roles, out_roles, order)
    if len(ins) != len(inputs):
        raise ValueError(f"sliced_map: {len(inputs)} inputs for {len(ins)} roles {ins!r} ({kind}, order {order})")
    return ins, outs


def _numel(shape: tuple[int, ...]) -> int:
    return functools.reduce(operator.mul, shape, 1)


def _unflatten(flat: Tensor, shapes: list[tuple[int, ...]]) -> list[Tensor]:
    """Views of the flat buffer ``flat`` with these shapes, in order."""
    parts = torch.split(flat, [_numel(shape) for shape in shapes])
    return [part.view(shape) for part, shape in zip(parts, shapes, strict=True)]


@torch.library.custom_op("visnet::sliced_map", mutates_args=())
def _sliced_map(
    edge_index: Tensor,
    inputs: list[Tensor],
    weights: list[Tensor],
    kind: str,
    in_roles: str,
    out_roles: str,
    order: int,
    chunk: int,
) -> Tensor:
    ins, outs = _check(inputs, kind, in_roles, out_roles, order)
    num_edges = edge_index.size(1)
    shapes = _output_shapes(inputs, weights, kind, in_roles, out_roles, order, num_edges)
    flat = inputs[0].new_empty(sum(_numel(shape) for shape in shapes))
    outputs = _unflatten(flat, shapes)
    for out, role in zip(outputs, outs, strict=True):
        if role != "e":  # summed into; per-edge outputs are written whole, slice by slice
            out.zero_()
    fn = _slice_function(kind, order, in_roles, out_roles)
    for start in range(0, num_edges, max(1, chunk)):
        part = slice(start, min(start + chunk, num_edges))
        ends = {"s": edge_index[0, part], "d": edge_index[1, part]}
        args = [t[part] if role == "e" else t.index_select(0, ends[role]) for t, role in zip(inputs, ins)]
        for out, value, role in zip(outputs, fn(weights, *args), outs, strict=True):
            if role == "e":
                out[part] = value
            else:
                out.index_add_(0, ends[role], value)
    return flat


@_sliced_map.register_fake
def _(edge_index, inputs, weights, kind, in_roles, out_roles, order, chunk):
    _check(inputs, kind, in_roles, out_roles, order)
    shapes = _output_shapes(inputs, weights, kind, in_roles, out_roles, order, edge_index.size(1))
    return inputs[0].new_empty(sum(_numel(shape) for shape in shapes))


def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
    edge_index, tensors, weights, kind, in_roles, out_roles, order, chunk = inputs
    ctx.save_for_backward(edge_index, *tensors, *weights)
    ctx.num_inputs = len(tensors)
    ctx.options = (kind, in_roles, out_roles, order, chunk)
    ctx.out_shapes = _output_shapes(tensors, weights, kind, in_roles, out_roles, order, edge_index.size(1))


def _backward(ctx, grad: Tensor | None) -> tuple:  # noqa: ANN001
    edge_index, *rest = ctx.saved_tensors
    inputs, weights = rest[: ctx.num_inputs], rest[ctx.num_inputs :]
    kind, in_roles, out_roles, order, chunk = ctx.options
    if grad is None:
        grad = inputs[0].new_zeros(sum(_numel(shape) for shape in ctx.out_shapes))
    cotangents = _unflatten(grad, ctx.out_shapes)
    input_grads = _sliced_map(
        edge_index, [*inputs, *cotangents], list(weights), kind, in_roles, out_roles, order + 1, chunk
    )
    input_shapes = [tuple(t.shape) for t in inputs]
    return None, _unflatten(input_grads, input_shapes), [None] * len(weights), None, None, None, None, None


_sliced_map.register_autograd(_backward, setup_context=_setup_context)


def sliced_map(
    edge_index: Tensor,
    inputs: list[Tensor],
    weights: list[Tensor],
    kind: str,
    in_roles: str,
    out_roles: str,
    chunk: int,
    order: int = 0,
) -> list[Tensor]:
    """Run the registered ``kind`` over the edges ``chunk`` at a time; differentiable to any order.

    Args:
        edge_index: (2, E) | row 0 = neighbour j, row 1 = centre i.
        inputs: per-node (N, ...) tensors (role ``s`` or ``d``) and per-edge (E, ...) ones (``e``),
            in the order the kind's function takes them.
        weights: the kind's weights (no gradient: they must not require grad in grad mode).
        kind: a name given to ``register_kind``.
        in_roles: one role letter per input (``s``, ``d`` or ``e``).
        out_roles: one role letter per output: ``s``/``d`` summed onto (N, ...) rows, ``e`` (E, ...).
        chunk: edges per slice (≥ 1).
        order: derivative order of the map (0: the kind itself; what the operator's backward uses).

    Returns:
        The outputs, in the kind's order.

    Raises:
        ValueError: a weight requires grad while grad mode is on, an unknown kind, or roles that do
            not match the inputs.
    """
    if torch.is_grad_enabled() and any(w.requires_grad for w in weights):
        raise ValueError("sliced_map computes no weight gradients: call it with frozen weights")
    _check(inputs, kind, in_roles, out_roles, order)
    shapes = _output_shapes(inputs, weights, kind, in_roles, out_roles, order, edge_index.size(1))
    return _unflatten(_sliced_map(edge_index, inputs, weights, kind, in_roles, out_roles, order, chunk), shapes)
