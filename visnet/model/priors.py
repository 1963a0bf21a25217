"""Priors applied to the head's per-atom outputs: the per-element Atomref and the isolated-atom reference."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from visnet.model.geometry import isolated_geometry

# Element sets whose isolated-atom tables are kept at once (per parameter version).
MAX_CACHED_TABLES = 64


class Atomref(nn.Module):
    """Trainable per-element reference added to each atom's contribution.

    Args:
        atomref: (max_z,) or (max_z, 1) initial values in the target's units (None: zeros).
        max_z: size of the table.
    """

    def __init__(self, atomref: Tensor | None = None, max_z: int = 100) -> None:
        super().__init__()
        initial = torch.zeros(max_z, 1) if atomref is None else torch.as_tensor(atomref, dtype=torch.float32)
        self.register_buffer("initial_atomref", initial.reshape(-1, 1))
        self.atomref = nn.Embedding(initial.numel(), 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.atomref.weight.copy_(self.initial_atomref)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        """x (N, 1), z (N,) -> x + atomref[z] (N, 1)."""
        return x + self.atomref(z)


class IsolatedAtomReference(nn.Module):
    """Subtracts from each atom's head output the output the same element has with no neighbours.

    An atom with no neighbours then contributes exactly its Atomref value (a free-atom energy),
    and separated fragments add up. The per-element table is computed eagerly (``table``) and
    the forward only indexes it, so a traced energy function (``torch.compile``, ``torch.export``)
    takes the table as an input and has no graph break. In eval mode the tables are cached while
    the model's parameters keep their versions; call ``refresh()`` whenever weights change without
    a version bump (``load_state_dict`` into the tensors, EMA swaps, statistics written with
    ``copy_``). The module holds no weights; it owns only that cache.
    """

    def __init__(self) -> None:
        super().__init__()
        self._cache: tuple[Any, dict[tuple[int, ...], Tensor]] | None = None

    def refresh(self) -> None:
        """Forget the cached tables: the next call evaluates the isolated atoms again."""
        self._cache = None

    def table(
        self,
        elements: Tensor,
        isolated_outputs: Callable[[Tensor], Tensor],
        parameters: Iterable[Tensor],
        dtype: torch.dtype,
        cache: bool,
    ) -> Tensor:
        """(K,) atomic numbers -> (K, 1) head outputs of those elements as lone atoms.

        Args:
            isolated_outputs: (K,) atomic numbers -> (K, 1) head outputs of lone atoms.
            parameters: the model's parameters (their versions key the cache).
            dtype: the model's dtype (part of the cache key, with the device of ``elements``).
            cache: reuse the table (eval mode: parameters fixed); False always recomputes it, with
                its graph (training: the table depends on the weights).
        """
        if not cache:
            return isolated_outputs(elements)
        key = (tuple(p._version for p in parameters), dtype, elements.device)
        if self._cache is None or self._cache[0] != key or len(self._cache[1]) >= MAX_CACHED_TABLES:
            self._cache = (key, {})
        tables = self._cache[1]
        names = tuple(elements.tolist())
        if names not in tables:
            tables[names] = isolated_outputs(elements).detach()
        return tables[names]

    def forward(self, per_atom: Tensor, table: Tensor, index: Tensor) -> Tensor:
        """per_atom (N, 1) head outputs, table (K, 1), index (N,) rows of ``table`` ->
        per_atom − table[index] (N, 1). Traceable: no data-dependent shapes, no cache."""
        return per_atom - table.index_select(0, index)


def isolated_atom_outputs(
    representation: nn.Module, head: nn.Module, lmax: int, dtype: torch.dtype, elements: Tensor
) -> Tensor:
    """(K,) atomic numbers -> (K, 1) outputs of ``head`` for each element as an atom with no neighbours.

    Args:
        representation: a ``ViSNetRepresentation``; head: a ``visnet.model.heads.Head``;
        lmax: the degree of its direction units; dtype: the model's.
    """
    geometry = isolated_geometry(elements.size(0), lmax, dtype, elements.device)
    x, v = representation(elements, geometry)
    pos = torch.zeros(elements.size(0), 3, dtype=dtype, device=elements.device)
    return head.pre_reduce(x, v, elements, pos, geometry.edge_index[0])
