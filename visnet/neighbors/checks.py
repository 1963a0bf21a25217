"""Input checks of ``radius_graph``: shapes, dtypes, finiteness, cutoff, batch, cell, pbc and
the number of periodic images a cell would need (clear ``ValueError`` naming the culprit)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from visnet.neighbors.systems import Systems


__all__ = [
    "MAX_PERIODIC_IMAGES",
    "check_batch",
    "check_cell",
    "check_cutoff",
    "check_image_count",
    "check_pbc",
    "check_pos",
]

# Most periodic images of one atom a search may visit (product over periodic directions of
# 2·ceil(cutoff / height) + 1). Real cells need < 10^3 at ML cutoffs; 10^5 means a cell thinner
# than ~cutoff / 23 (degenerate or mis-scaled), whose search would exhaust memory, not fail.
MAX_PERIODIC_IMAGES = 100_000


def check_pos(pos: Tensor) -> None:
    if not isinstance(pos, Tensor) or pos.dim() != 2 or pos.shape[1] != 3:
        shape = tuple(pos.shape) if isinstance(pos, Tensor) else type(pos).__name__
        raise ValueError(f"pos must be a (num_atoms, 3) tensor, got {shape}")
    if not pos.is_floating_point():
        raise ValueError(f"pos must be floating point, got {pos.dtype}")
    bad = ~torch.isfinite(pos.detach()).all(dim=1)
    if bad.any():
        first = int(bad.nonzero()[0, 0])
        raise ValueError(f"pos has non-finite coordinates, first at atom {first}")


def check_cutoff(cutoff: float) -> float:
    cutoff = float(cutoff)
    if not (cutoff > 0 and cutoff < float("inf")):
        raise ValueError(f"cutoff must be a positive finite number, got {cutoff}")
    return cutoff


def check_batch(batch: Tensor | None, num_atoms: int, device: torch.device) -> Tensor:
    if batch is None:
        return torch.zeros(num_atoms, dtype=torch.long, device=device)
    if not isinstance(batch, Tensor) or batch.shape != (num_atoms,):
        shape = tuple(batch.shape) if isinstance(batch, Tensor) else type(batch).__name__
        raise ValueError(f"batch must have shape ({num_atoms},) to match pos, got {shape}")
    if batch.is_floating_point() or batch.is_complex() or batch.dtype == torch.bool:
        raise ValueError(f"batch must be an integer tensor, got {batch.dtype}")
    batch = batch.to(device=device, dtype=torch.long)
    if num_atoms and int(batch[0]) < 0:
        raise ValueError("batch indices must be non-negative")
    if num_atoms > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("batch must be sorted in non-decreasing order")
    return batch


def check_cell(cell: Tensor, num_graphs: int, device: torch.device) -> Tensor:
    cell = torch.as_tensor(cell, device=device).detach().to(torch.float64)
    if cell.shape == (3, 3):
        cell = cell.expand(num_graphs, 3, 3)
    if cell.shape != (num_graphs, 3, 3):
        raise ValueError(f"cell must have shape (3, 3) or (num_graphs={num_graphs}, 3, 3), got {tuple(cell.shape)}")
    if not bool(torch.isfinite(cell).all()):
        raise ValueError("cell has non-finite entries")
    return cell


def check_pbc(pbc: Tensor | None, has_cell: bool, num_graphs: int, device: torch.device) -> Tensor:
    if pbc is None:
        return torch.full((num_graphs, 3), has_cell, dtype=torch.bool, device=device)
    pbc = torch.as_tensor(pbc, device=device)
    if pbc.dtype != torch.bool:
        raise ValueError(f"pbc must be boolean, got {pbc.dtype}")
    if pbc.shape in ((), (3,)):
        pbc = pbc.expand(num_graphs, 3)
    if pbc.shape != (num_graphs, 3):
        raise ValueError(f"pbc must have shape (3,) or (num_graphs={num_graphs}, 3), got {tuple(pbc.shape)}")
    if not has_cell and bool(pbc.any()):
        raise ValueError("pbc is set but cell is None: a periodic system needs a cell")
    return pbc


def check_image_count(systems: Systems, cutoff: float) -> None:
    """Refuse cells so thin for the cutoff that the search would need > MAX_PERIODIC_IMAGES images."""
    reach = torch.ceil(cutoff / systems.heights).clamp(max=1e6)
    images = torch.where(systems.pbc, 2 * reach + 1, torch.ones_like(reach)).prod(dim=1)
    if bool((images > MAX_PERIODIC_IMAGES).any()):
        g = int(torch.argmax(images))
        heights = ", ".join(f"{h:.3g}" for h in systems.heights[g].tolist())
        raise ValueError(
            f"cell of graph {g} is too small for the cutoff {cutoff:g}: its heights ({heights}) would give each "
            f"atom ~{float(images[g]):.1e} periodic images within the cutoff (limit {MAX_PERIODIC_IMAGES:,}); "
            "is the cell in the right length unit?"
        )
