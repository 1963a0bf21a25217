"""Block pairs: every atom of one contiguous run against every atom of another, in bounded chunks
(the distance kernel the dense and cell-list back ends share)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from visnet.neighbors.edges import cat_edges, expand
from visnet.neighbors.periodic import times_cell

__all__ = ["BlockPairs", "OrderedAtoms", "compare_blocks"]

# Atom pairs compared per chunk: small enough for the temporaries to stay in cache.
_CHUNK_PAIRS = 1 << 16
# Longest runs of atoms compared at once (bounds memory when bins or graphs are huge).
_MAX_BLOCK_A, _MAX_BLOCK_B = 64, 4096


@dataclass
class OrderedAtoms:
    """Atoms in search order: each block of a block pair is a contiguous run of this order."""

    pos: Tensor  # (N, 3) Å
    frac: Tensor  # (N, 3)
    index: Tensor  # (N,) original atom index

    def __post_init__(self) -> None:
        self.columns = self.pos.T.contiguous()
        self.frac_columns = self.frac.T.contiguous()


@dataclass
class BlockPairs:
    """Pairs of atom blocks to compare; every atom of block a against every atom of block b.

    The image of the b atom is ``shift`` plus, along ``nearest`` directions, the image of b
    closest to a in fractional coordinates.
    """

    a_start: Tensor  # (P,)
    a_len: Tensor  # (P,)
    b_start: Tensor  # (P,)
    b_len: Tensor  # (P,)
    shift: Tensor  # (P, 3) int64
    nearest: Tensor  # (P, 3) bool
    graph: Tensor  # (P,)

    def select(self, mask: Tensor) -> BlockPairs:
        return BlockPairs(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


def _padded_size(x: Tensor) -> Tensor:
    """Round block sizes up to 2^k or 1.5 * 2^k, wasting at most 1.5x per side on padding."""
    power = torch.exp2(torch.floor(torch.log2(x.clamp_min(1).double()))).long()
    return torch.where(x <= power, power, torch.where(x <= power * 3 // 2, power * 3 // 2, 2 * power))


def _split(pairs: BlockPairs, side: str, limit: int) -> BlockPairs:
    """Cut blocks on one side ("a" or "b") into runs of at most ``limit`` atoms."""
    length = getattr(pairs, f"{side}_len")
    pieces = torch.div(length + limit - 1, limit, rounding_mode="floor").clamp_min(1)
    item, rank = expand(pieces)
    out = pairs.select(item)
    setattr(out, f"{side}_start", getattr(out, f"{side}_start") + rank * limit)
    setattr(out, f"{side}_len", (getattr(out, f"{side}_len") - rank * limit).clamp(max=limit))
    return out


def compare_blocks(
    atoms: OrderedAtoms, pairs: BlockPairs, cell: Tensor, cutoff: float
) -> tuple[Tensor, Tensor, Tensor]:
    """All (i in a, j in b, n) within the cutoff, for every block pair (unsorted).

    Blocks are cut to bound memory, grouped by padded size so that one large block does not
    pad all the others, and processed in chunks of about ``_CHUNK_PAIRS`` atom pairs.
    """
    pairs = pairs.select((pairs.a_len > 0) & (pairs.b_len > 0))
    pairs = _split(_split(pairs, "a", _MAX_BLOCK_A), "b", _MAX_BLOCK_B)
    size_a, size_b = _padded_size(pairs.a_len), _padded_size(pairs.b_len)
    bucket = size_a * (int(size_b.max()) + 1 if size_b.numel() else 1) + size_b
    parts = []
    for key in torch.unique(bucket).tolist():
        members = (bucket == key).nonzero().flatten()
        pad_a, pad_b = int(size_a[members[0]]), int(size_b[members[0]])
        step = max(1, _CHUNK_PAIRS // (pad_a * pad_b))
        for lo in range(0, members.numel(), step):
            chunk = pairs.select(members[lo : lo + step])
            parts.append(_compare_chunk(atoms, chunk, cell, cutoff, pad_a, pad_b))
    return cat_edges(parts, atoms.pos.device)


def _compare_chunk(
    atoms: OrderedAtoms, pairs: BlockPairs, cell: Tensor, cutoff: float, pad_a: int, pad_b: int
) -> tuple[Tensor, Tensor, Tensor]:
    rank_a = torch.arange(pad_a, device=cell.device)
    rank_b = torch.arange(pad_b, device=cell.device)
    in_a, in_b = rank_a < pairs.a_len[:, None], rank_b < pairs.b_len[:, None]
    # padding slots point at the block's first atom and are masked out below
    at_a = pairs.a_start[:, None] + rank_a * in_a
    at_b = pairs.b_start[:, None] + rank_b * in_b
    cells = cell[pairs.graph]
    if bool(pairs.nearest.any()):
        dist2 = _nearest_dist2(atoms, pairs, cells, at_a, at_b)
    else:
        dist2 = _shifted_dist2(atoms, pairs, cells, at_a, at_b)
    inside = (dist2 < cutoff * cutoff) & in_a[:, :, None] & in_b[:, None, :]
    p, a, b = inside.nonzero(as_tuple=True)
    i, j, shifts = at_a[p, a], at_b[p, b], pairs.shift[p]
    if bool(pairs.nearest.any()):
        nearest = torch.round(atoms.frac[i] - atoms.frac[j]).long()
        shifts = shifts + torch.where(pairs.nearest[p], nearest, 0)
    keep = (i != j) | shifts.any(dim=1)
    return atoms.index[i[keep]], atoms.index[j[keep]], shifts[keep]


def _shifted_dist2(atoms: OrderedAtoms, pairs: BlockPairs, cells: Tensor, at_a: Tensor, at_b: Tensor) -> Tensor:
    """(P, Ma, Mb) squared distances with one fixed image shift per block pair."""
    image = times_cell(pairs.shift.to(cells.dtype), cells)
    dist2 = None
    for c in range(3):  # per component: contiguous (P, Ma, Mb) ops are much faster than (..., 3)
        column = atoms.columns[c]
        # difference first, image second: a self image then lands exactly on the cell vector
        d = (column[at_b][:, None, :] - column[at_a][:, :, None]) + image[:, c, None, None]
        dist2 = d * d if dist2 is None else dist2 + d * d
    return dist2


def _nearest_dist2(atoms: OrderedAtoms, pairs: BlockPairs, cells: Tensor, at_a: Tensor, at_b: Tensor) -> Tensor:
    """(P, Ma, Mb) squared distances at the nearest image (+ shift) along ``nearest`` directions."""
    frac = []
    for c in range(3):
        column = atoms.frac_columns[c]
        f = column[at_b][:, None, :] - column[at_a][:, :, None]
        wrap = pairs.nearest[:, c, None, None].to(f.dtype)
        frac.append(f - torch.round(f) * wrap + pairs.shift[:, c, None, None].to(f.dtype))
    dist2 = None
    for c in range(3):
        d = sum(frac[k] * cells[:, k, c, None, None] for k in range(3))
        dist2 = d * d if dist2 is None else dist2 + d * d
    return dist2
