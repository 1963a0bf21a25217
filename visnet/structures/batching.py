"""Batches of ASE structures for the model: inputs, per-structure outputs, the structure at fault.

Positions are made relative (each structure's first atom at the origin) in float64 NumPy
*before* they are cast to the model's dtype: a molecule 10⁵ Å from the origin keeps its geometry
in float32 (the model is translation invariant, so results are those at the origin).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch
from ase import Atoms
from torch import Tensor

__all__ = ["atom_slices", "batch_inputs", "find_faulty", "relative_positions", "split_outputs"]

T = TypeVar("T")


def relative_positions(atoms: Atoms, length: float) -> np.ndarray:
    """(N, 3) float64 positions of ``atoms`` relative to its first atom, in model length units.

    Args:
        atoms: a structure with at least one atom (positions in Å).
        length: Å per model length unit.
    """
    positions = np.asarray(atoms.positions, dtype=np.float64)
    return (positions - positions[0]) / length


def batch_inputs(
    images: Sequence[Atoms], length: float, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """Model inputs for many structures in one batch.

    Args:
        images: structures (molecules and/or periodic systems), positions in Å, each non-empty.
        length: Å per model length unit (positions and cells are divided by it).
        dtype, device: of the returned floating-point tensors.

    Returns:
        (z (N,) int64, pos (N, 3) model length units, relative to each structure's first atom,
        batch (N,) int64, cell (G, 3, 3) or None (zeros for the non-periodic images of a mixed
        batch), pbc (G, 3) bool or None).
    """
    counts = torch.as_tensor([len(a) for a in images], device=device)
    z = torch.as_tensor(np.concatenate([a.numbers for a in images]), dtype=torch.long, device=device)
    pos64 = np.concatenate([relative_positions(a, length) for a in images])
    pos = torch.as_tensor(pos64, dtype=dtype, device=device)
    batch = torch.repeat_interleave(torch.arange(len(images), device=device), counts)
    cell = pbc = None
    if any(a.pbc.any() for a in images):
        cells = np.stack([np.asarray(a.cell) if a.pbc.any() else np.zeros((3, 3)) for a in images])
        cell = torch.as_tensor(cells / length, dtype=dtype, device=device)
        pbc = torch.as_tensor(np.stack([a.pbc for a in images]), dtype=torch.bool, device=device)
    return z, pos, batch, cell, pbc


def atom_slices(sizes: Sequence[int]) -> list[slice]:
    """One slice per structure into the batch's atom rows, for structures of ``sizes`` atoms."""
    starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    return [slice(int(starts[k]), int(starts[k + 1])) for k in range(len(sizes))]


def split_outputs(out: dict[str, Tensor], sizes: Sequence[int], per_atom: set[str]) -> list[dict[str, Tensor]]:
    """The model's batched outputs as one dict per structure.

    Args:
        out: model outputs; keys in ``per_atom`` have one row per atom (N, ...), the others one
            row per structure (G, ...).
        sizes: atoms per structure (G,).
        per_atom: the keys indexed by atom.

    Returns:
        G dicts with the same keys: per-atom values (n_k, ...), per-structure values (...).
    """
    slices = atom_slices(sizes)
    return [
        {key: value[s] if key in per_atom else value[k] for key, value in out.items()} for k, s in enumerate(slices)
    ]


def find_faulty(
    items: Sequence[T],
    run_one: Callable[[T], object],
    err: Exception,
    describe: Callable[[int, T], str],
    catch: tuple[type[Exception], ...] = (ValueError,),
) -> Exception:
    """The batch failed with ``err``: run the items one by one and name the first that fails alone.

    Args:
        items: the batch's structures (anything ``run_one`` takes).
        run_one: evaluates one item; raises one of ``catch`` when that item is at fault.
        err: the batch's error (returned unchanged when no item fails alone).
        describe: (index, item) -> the item's name for the message, e.g. "image 3".
        catch: the error types that mark an item at fault (others propagate).

    Returns:
        "<describe(k, item)>: <its own message>" as the item's error type (atom numbers then
        count within that structure, not the batch), or ``err``.
    """
    for k, item in enumerate(items):
        try:
            run_one(item)
        except catch as inner:
            return type(inner)(f"{describe(k, item)}: {inner}")
    return err
