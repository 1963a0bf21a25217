"""Readout: per-atom head outputs (priors applied) -> molecular outputs, by the head's declaration."""

from __future__ import annotations

import torch
from torch import Tensor

from visnet.model.heads import Head
from visnet.model.scatter import scatter_mean, scatter_sum


def atomic_contributions(per_atom: Tensor, batch: Tensor, num_graphs: int, mean: Tensor, reduce_op: str) -> Tensor:
    """(N,) per-atom shares of the molecular output (the per-molecule ``mean`` spread evenly).

    Args:
        per_atom: (N, 1) contributions. batch: (N,) graph index. mean: () added per molecule.
    """
    counts = scatter_sum(torch.ones_like(per_atom), batch, num_graphs)
    if reduce_op == "mean":
        per_atom = per_atom / counts.index_select(0, batch)
    return (per_atom + (mean / counts).index_select(0, batch)).squeeze(-1)


def reduce_outputs(
    head: Head, per_atom: Tensor, batch: Tensor, num_graphs: int, key: str, reduce_op: str, mean: Tensor
) -> dict[str, Tensor]:
    """Reduce per-atom outputs (N, 1) or (N, 3) per molecule, add ``mean`` (heads that take priors)
    and finish with the head's ``post_reduce``.

    Returns:
        ``key`` (G,); "atomic_<key>" (N,) for scalar heads or "<key>_vector" (G, 3) for vector-valued ones.
    """
    reduce = scatter_sum if reduce_op == "sum" else scatter_mean
    y = reduce(per_atom, batch, num_graphs)
    if head.takes_prior:
        y = y + mean
    out = {key: head.post_reduce(y).squeeze(-1)}
    if head.vector_valued:
        out[f"{key}_vector"] = y
    else:
        out[f"atomic_{key}"] = atomic_contributions(per_atom, batch, num_graphs, mean, reduce_op)
    return out
