"""Input checks of the model API: clear ``ValueError`` messages that name the culprit."""

from __future__ import annotations

import torch
from torch import Tensor


def _first_index(mask: Tensor) -> int:
    return int(torch.nonzero(mask)[0, 0])


def _check_tensor(value: object, name: str) -> None:
    """A clear error for NumPy arrays, lists, ... where the model needs a tensor (not AttributeError)."""
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__} (convert it with torch.as_tensor)")


def check_species(z: Tensor, max_z: int) -> None:
    """z: (N,) integer atomic numbers in [1, max_z − 1]."""
    if z.dim() != 1:
        raise ValueError(f"z must have shape (num_atoms,), got {tuple(z.shape)}")
    if z.dtype.is_floating_point or z.dtype == torch.bool:
        raise ValueError(f"z must hold integer atomic numbers, got dtype {z.dtype}")
    if z.numel() == 0:
        raise ValueError("empty structure: z holds no atoms")
    bad = (z < 1) | (z >= max_z)
    if bool(bad.any()):
        i = _first_index(bad)
        raise ValueError(f"atom {i} has atomic number {int(z[i])}, outside the model's range 1..{max_z - 1}")


def check_positions(pos: Tensor, num_atoms: int, dtype: torch.dtype) -> None:
    """pos: (N, 3) finite, floating point, in the model's dtype."""
    _check_tensor(pos, "pos")
    if pos.dim() != 2 or pos.size(1) != 3:
        raise ValueError(f"pos must have shape (num_atoms, 3), got {tuple(pos.shape)}")
    if pos.size(0) != num_atoms:
        raise ValueError(f"pos has {pos.size(0)} rows but z has {num_atoms} atoms")
    if not pos.dtype.is_floating_point:
        raise ValueError(f"pos must be floating point, got dtype {pos.dtype}")
    if pos.dtype != dtype:
        raise ValueError(
            f"pos has dtype {pos.dtype} but the model is {dtype}: convert one of them (model.to({pos.dtype}))"
        )
    finite = torch.isfinite(pos).all(dim=1)
    if not bool(finite.all()):
        i = _first_index(~finite)
        raise ValueError(f"position of atom {i} is not finite: {pos[i].tolist()}")


def check_batch(batch: Tensor, num_atoms: int) -> int:
    """batch: (N,) sorted graph indices starting at 0; returns the number of graphs."""
    _check_tensor(batch, "batch")
    if batch.dim() != 1 or batch.size(0) != num_atoms:
        raise ValueError(f"batch must have shape ({num_atoms},), got {tuple(batch.shape)}")
    if batch.dtype.is_floating_point or batch.dtype == torch.bool:
        raise ValueError(f"batch must hold integer graph indices, got dtype {batch.dtype}")
    if bool((batch[1:] < batch[:-1]).any()) or int(batch[0]) < 0:
        raise ValueError("batch must be non-negative and sorted (atoms of one graph contiguous)")
    return int(batch[-1]) + 1


def check_cell(
    cell: Tensor | None, pbc: Tensor | None, num_graphs: int, dtype: torch.dtype
) -> tuple[Tensor | None, Tensor | None]:
    """Normalise cell to (G, 3, 3) and pbc to (G, 3) bool; a periodic system needs a cell."""
    if cell is None:
        if pbc is not None and bool(torch.as_tensor(pbc).any()):
            raise ValueError("pbc is set but no cell was given: a periodic system needs a cell")
        return None, None
    cell = torch.as_tensor(cell)
    if cell.shape == (3, 3):
        cell = cell.unsqueeze(0).expand(num_graphs, 3, 3)
    if cell.shape != (num_graphs, 3, 3):
        raise ValueError(f"cell must have shape (3, 3) or ({num_graphs}, 3, 3), got {tuple(cell.shape)}")
    if cell.dtype != dtype:
        raise ValueError(f"cell has dtype {cell.dtype} but the model is {dtype}")
    if not bool(torch.isfinite(cell).all()):
        raise ValueError("cell has non-finite entries")
    pbc = torch.ones(num_graphs, 3, dtype=torch.bool, device=cell.device) if pbc is None else _as_pbc(pbc, cell.device)
    if pbc.shape == (3,):
        pbc = pbc.unsqueeze(0).expand(num_graphs, 3)
    if pbc.shape != (num_graphs, 3):
        raise ValueError(f"pbc must have shape (3,) or ({num_graphs}, 3), got {tuple(pbc.shape)}")
    return cell, pbc.to(torch.bool)


def _as_pbc(pbc: object, device: torch.device) -> Tensor:
    """pbc as a bool tensor; booleans (or 0/1) only, not strings or fractions."""
    message = f"pbc must hold booleans (periodic or not per direction), got {pbc!r}"
    try:
        flags = torch.as_tensor(pbc, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(message) from None
    if flags.dtype != torch.bool and (flags.dtype.is_floating_point or not bool(((flags == 0) | (flags == 1)).all())):
        raise ValueError(message)
    return flags


def check_no_coincident_atoms(distances: Tensor, edge_index: Tensor, self_loop: Tensor, min_distance: float) -> None:
    """Raise when two distinct atoms (or an atom and a periodic image) are closer than ``min_distance`` Å."""
    close = (distances < min_distance) & ~self_loop
    if bool(close.any()):
        e = _first_index(close)
        i, j = int(edge_index[1, e]), int(edge_index[0, e])
        raise ValueError(
            f"atoms {i} and {j} are coincident (distance {float(distances[e].detach()):.2e} Å < {min_distance} Å)"
        )


def model_inputs(
    z: Tensor,
    pos: Tensor,
    batch: Tensor | None,
    cell: Tensor | None,
    pbc: Tensor | None,
    max_z: int,
    dtype: torch.dtype,
    device: torch.device,
    check: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, int]:
    """Checked, normalised model inputs: z (N,) int64, pos, batch (N,) int64 (zeros when None),
    cell (G, 3, 3) or None, pbc (G, 3) bool or None, and the number of graphs G."""
    z = torch.as_tensor(z, device=device)
    if check:
        check_species(z, max_z)
        check_positions(pos, z.size(0), dtype)
    if batch is None:
        batch = torch.zeros(z.size(0), dtype=torch.long, device=pos.device)
        num_graphs = 1
    else:
        num_graphs = check_batch(batch, z.size(0))
    cell, pbc = check_cell(cell, pbc, num_graphs, dtype)
    return z.long(), pos, batch.long(), cell, pbc, num_graphs
