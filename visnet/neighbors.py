"""Radius graphs (neighbour lists) in plain torch, with periodic boundary conditions.

Three interchangeable back ends return identical edge sets in the same order:

* ``"dense"``: all pairs of every graph, enumerated in bounded chunks (best for small graphs);
* ``"cell_list"``: atoms binned into cells of side >= cutoff, linear in the number of atoms;
* ``"vesin"``: the optional ``vesin`` C++ neighbour list (CPU, one graph at a time).

Conventions (shared with the model): ``edge_index[0]`` is the neighbour ``j`` (source),
``edge_index[1]`` the centre ``i`` (target), and the edge vector is
``pos[j] + cell_offsets @ cell[batch[i]] - pos[i]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["NeighborList", "radius_graph", "AUTO_DENSE_MAX_ATOMS", "MAX_PERIODIC_IMAGES"]

# Largest graph (atoms) for which method="auto" uses the dense search; measured on one CPU
# thread: dense and cell_list cost the same near 500 atoms (water density, 5 Å cutoff).
AUTO_DENSE_MAX_ATOMS = 512
# Atom pairs compared per chunk: small enough for the temporaries to stay in cache.
_CHUNK_PAIRS = 1 << 16
# Longest runs of atoms compared at once (bounds memory when bins or graphs are huge).
_MAX_BLOCK_A, _MAX_BLOCK_B = 64, 4096
_METHODS = ("auto", "dense", "cell_list", "vesin")
# Most periodic images of one atom a search may visit (product over periodic directions of
# 2·ceil(cutoff / height) + 1). Real cells need < 10^3 at ML cutoffs; 10^5 means a cell thinner
# than ~cutoff / 23 (degenerate or mis-scaled), whose search would exhaust memory, not fail.
MAX_PERIODIC_IMAGES = 100_000
# vesin (0.6) dies with SIGFPE once its bounding box holds more than ~10^5 cutoff-sized cells and
# one direction is thin; such sparse graphs are searched with the cell list instead (same edges).
_VESIN_MAX_CELLS = 50_000


@dataclass
class NeighborList:
    """Edges of a radius graph.

    Attributes:
        edge_index: (2, num_edges) int64; row 0 is the neighbour ``j`` (source), row 1 the
            centre ``i`` (target). Sorted by (i, j, cell_offsets); self loops, when requested,
            come last, one per atom in atom order.
        cell_offsets: (num_edges, 3), dtype of ``pos``; integer image counts ``n`` such that the
            edge vector is ``pos[j] + n @ cell[batch[i]] - pos[i]`` (Å). All zeros without pbc.
    """

    edge_index: Tensor
    cell_offsets: Tensor

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]


@dataclass
class _Systems:
    """Validated geometry of a batch, float64, on the device of ``pos``."""

    pos: Tensor  # (N, 3) Å
    batch: Tensor  # (N,) int64
    ptr: Tensor  # (G + 1,) first atom of each graph
    cell: Tensor  # (G, 3, 3) non-singular search cell (identity for graphs without pbc)
    pbc: Tensor  # (G, 3) bool
    heights: Tensor  # (G, 3) perpendicular heights of the search cell
    frac: Tensor  # (N, 3) fractional coordinates in the search cell (not wrapped)

    @property
    def num_atoms(self) -> int:
        return self.pos.shape[0]

    @property
    def sizes(self) -> Tensor:
        return self.ptr[1:] - self.ptr[:-1]


def radius_graph(
    pos: Tensor,
    cutoff: float,
    batch: Tensor | None = None,
    cell: Tensor | None = None,
    pbc: Tensor | None = None,
    self_loops: bool = False,
    method: str = "auto",
) -> NeighborList:
    """All ordered pairs of atoms closer than ``cutoff`` within the same graph.

    Args:
        pos: (num_atoms, 3) float32/float64 positions in Å; need not be wrapped into the cell.
        cutoff: radius in Å; pairs with distance strictly below it are edges.
        batch: (num_atoms,) int64 graph index, sorted non-decreasing; None means one graph.
        cell: (num_graphs, 3, 3) or (3, 3) lattice vectors as rows (Å), or None.
            Graphs without periodic directions may have a zero cell.
        pbc: (num_graphs, 3), (3,) or () bool periodic directions; None means all periodic when
            ``cell`` is given and none otherwise.
        self_loops: append one (i, i, 0) edge per atom.
        method: "dense", "cell_list", "vesin" (needs the ``vesin`` package) or "auto"
            (dense when every graph has at most ``AUTO_DENSE_MAX_ATOMS`` atoms, otherwise
            vesin on CPU when installed, otherwise cell_list).

    Returns:
        NeighborList with ``edge_index`` (2, E) int64 and ``cell_offsets`` (E, 3). Periodic
        images of an atom itself, (i, i, n != 0), are edges. Neighbours are never truncated.
        Indices are computed without autograd.

    Raises:
        ValueError: on malformed input (shapes, non-finite positions, unsorted batch,
            non-positive cutoff, singular periodic cell, pbc without cell, unknown method), or a
            periodic cell so thin that an atom would have more than ``MAX_PERIODIC_IMAGES``
            images within the cutoff.
    """
    _check_pos(pos)
    cutoff = _check_cutoff(cutoff)
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {_METHODS}")
    with torch.no_grad():
        systems = _prepare(pos, batch, cell, pbc)
        _check_image_count(systems, cutoff)
        method = _resolve_method(method, systems)
        i, j, shifts = _SEARCHES[method](systems, cutoff)
        if self_loops:
            loops = torch.arange(systems.num_atoms, device=pos.device)
            i, j = torch.cat([i, loops]), torch.cat([j, loops])
            shifts = torch.cat([shifts, shifts.new_zeros(systems.num_atoms, 3)])
        return NeighborList(torch.stack([j, i]), shifts.to(pos.dtype))


# --------------------------------------------------------------------------- validation


def _check_pos(pos: Tensor) -> None:
    if not isinstance(pos, Tensor) or pos.dim() != 2 or pos.shape[1] != 3:
        shape = tuple(pos.shape) if isinstance(pos, Tensor) else type(pos).__name__
        raise ValueError(f"pos must be a (num_atoms, 3) tensor, got {shape}")
    if not pos.is_floating_point():
        raise ValueError(f"pos must be floating point, got {pos.dtype}")
    bad = ~torch.isfinite(pos.detach()).all(dim=1)
    if bad.any():
        first = int(bad.nonzero()[0, 0])
        raise ValueError(f"pos has non-finite coordinates, first at atom {first}")


def _check_cutoff(cutoff: float) -> float:
    cutoff = float(cutoff)
    if not (cutoff > 0 and cutoff < float("inf")):
        raise ValueError(f"cutoff must be a positive finite number, got {cutoff}")
    return cutoff


def _check_batch(batch: Tensor | None, num_atoms: int, device: torch.device) -> Tensor:
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


def _check_cell(cell: Tensor, num_graphs: int, device: torch.device) -> Tensor:
    cell = torch.as_tensor(cell, device=device).detach().to(torch.float64)
    if cell.shape == (3, 3):
        cell = cell.expand(num_graphs, 3, 3)
    if cell.shape != (num_graphs, 3, 3):
        raise ValueError(f"cell must have shape (3, 3) or (num_graphs={num_graphs}, 3, 3), got {tuple(cell.shape)}")
    if not bool(torch.isfinite(cell).all()):
        raise ValueError("cell has non-finite entries")
    return cell


def _check_pbc(pbc: Tensor | None, has_cell: bool, num_graphs: int, device: torch.device) -> Tensor:
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


# --------------------------------------------------------------------------- preparation


def _num_graphs(batch: Tensor, cell: Tensor | None, pbc: Tensor | None) -> int:
    """Graph count from a batched cell/pbc when given (allows empty trailing graphs), else batch."""
    from_batch = int(batch[-1]) + 1 if batch.numel() else 1
    given = [int(v.shape[0]) for v, dim in ((cell, 3), (pbc, 2)) if getattr(v, "ndim", None) == dim]
    if not given:
        return from_batch
    if len(set(given)) > 1:
        raise ValueError(f"cell describes {given[0]} graphs but pbc describes {given[1]}")
    if from_batch > given[0]:
        raise ValueError(f"batch refers to graph {from_batch - 1} but only {given[0]} cells/pbc given")
    return given[0]


def _prepare(pos: Tensor, batch: Tensor | None, cell: Tensor | None, pbc: Tensor | None) -> _Systems:
    device = pos.device
    batch = _check_batch(batch, pos.shape[0], device)
    num_graphs = _num_graphs(batch, cell, pbc)
    pbc_t = _check_pbc(pbc, cell is not None, num_graphs, device)
    if cell is None:
        cell_t = torch.zeros(num_graphs, 3, 3, dtype=torch.float64, device=device)
    else:
        cell_t = _check_cell(cell, num_graphs, device)
    search_cell = _search_cells(cell_t, pbc_t)
    counts = torch.bincount(batch, minlength=num_graphs)
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    pos64 = pos.detach().to(torch.float64)
    frac = _times_cell(pos64, torch.linalg.inv(search_cell)[batch])
    return _Systems(pos64, batch, ptr, search_cell, pbc_t.clone(), _heights(search_cell), frac)


def _heights(cell: Tensor) -> Tensor:
    """(G, 3) perpendicular heights: volume / area of the face spanned by the other two rows."""
    volume = torch.linalg.det(cell).abs()
    areas = torch.stack(
        [torch.linalg.cross(cell[:, (k + 1) % 3], cell[:, (k + 2) % 3]).norm(dim=-1) for k in range(3)],
        dim=1,
    )
    return volume[:, None] / areas.clamp_min(torch.finfo(torch.float64).tiny)


def _check_image_count(systems: _Systems, cutoff: float) -> None:
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


def _is_singular(cell: Tensor) -> Tensor:
    scale = cell.norm(dim=-1).prod(dim=-1)
    return torch.linalg.det(cell).abs() <= 1e-10 * scale.clamp_min(1e-300)


def _search_cells(cell: Tensor, pbc: Tensor) -> Tensor:
    """Non-singular (G, 3, 3) cells used for the search.

    Graphs without pbc get the identity (fractional = Cartesian coordinates). Non-periodic rows
    that make the cell singular (e.g. a slab given with a zero third vector) are replaced by unit
    normals; they never appear in the returned offsets, which are zero along those directions.
    """
    periodic = pbc.any(dim=1)
    eye = torch.eye(3, dtype=cell.dtype, device=cell.device).expand_as(cell)
    out = torch.where(periodic[:, None, None], cell, eye).clone()
    mixed = periodic & ~pbc.all(dim=1) & _is_singular(out)
    for g in mixed.nonzero().flatten().tolist():
        out[g] = _complete_rows(out[g], pbc[g])
    bad = periodic & _is_singular(out)
    if bool(bad.any()):
        g = int(bad.nonzero()[0, 0])
        raise ValueError(f"cell of graph {g} is singular along its periodic directions")
    return out


def _unit(v: Tensor) -> Tensor:
    return v / v.norm().clamp_min(1e-300)


def _complete_rows(cell: Tensor, pbc: Tensor) -> Tensor:
    cell = cell.clone()
    rows = pbc.nonzero().flatten().tolist()
    free = (~pbc).nonzero().flatten().tolist()
    if len(rows) == 2:
        cell[free[0]] = _unit(torch.linalg.cross(cell[rows[0]], cell[rows[1]]))
        return cell
    a = cell[rows[0]]
    axis = torch.zeros_like(a)
    axis[int(a.abs().argmin())] = 1.0
    u1 = _unit(torch.linalg.cross(a, axis))
    cell[free[0]], cell[free[1]] = u1, _unit(torch.linalg.cross(a, u1))
    return cell


def _resolve_method(method: str, systems: _Systems) -> str:
    if method != "auto":
        return method
    largest = int(systems.sizes.max()) if systems.sizes.numel() else 0
    if largest <= AUTO_DENSE_MAX_ATOMS:
        return "dense"
    if systems.pos.device.type == "cpu" and _vesin_available():
        return "vesin"
    return "cell_list"


# --------------------------------------------------------------------------- shared helpers


def _wrap(systems: _Systems) -> tuple[Tensor, Tensor, Tensor]:
    """Wrap atoms into the cell along periodic directions.

    Returns wrapped positions (N, 3) Å, wrapped fractional coordinates (N, 3) and the integer
    wrap counts (N, 3) int64, with ``pos = pos_wrapped + wraps @ cell``.
    """
    periodic = systems.pbc[systems.batch]
    wraps = torch.where(periodic, systems.frac.floor(), torch.zeros_like(systems.frac))
    frac = systems.frac - wraps
    pos = systems.pos - _times_cell(wraps, systems.cell[systems.batch])
    return pos, frac, wraps.long()


def _times_cell(n: Tensor, cell: Tensor) -> Tensor:
    """Row vectors (..., 3) times matching cells (..., 3, 3), as three broadcast FMAs."""
    return n[..., 0:1] * cell[..., 0, :] + n[..., 1:2] * cell[..., 1, :] + n[..., 2:3] * cell[..., 2, :]


def _sort_edges(i: Tensor, j: Tensor, shifts: Tensor, num_atoms: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sort edges lexicographically by (i, j, shift_x, shift_y, shift_z)."""
    if i.numel() == 0:
        return i, j, shifts
    low = shifts.amin(dim=0)
    base = int((shifts.amax(dim=0) - low).max()) + 1
    if num_atoms**2 * base**3 < 2**62:
        code = shifts - low
        key = (i * num_atoms + j) * base**3 + (code[:, 0] * base + code[:, 1]) * base + code[:, 2]
        order = torch.argsort(key)
    else:  # key would overflow int64: stable sorts from the least significant column
        order = torch.arange(i.numel(), device=i.device)
        for column in (shifts[:, 2], shifts[:, 1], shifts[:, 0], j, i):
            order = order[torch.sort(column[order], stable=True).indices]
    return i[order], j[order], shifts[order]


def _empty(device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    idx = torch.empty(0, dtype=torch.long, device=device)
    return idx, idx.clone(), torch.empty(0, 3, dtype=torch.long, device=device)


def _cat(parts: list[tuple[Tensor, Tensor, Tensor]], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    if not parts:
        return _empty(device)
    i, j, s = zip(*parts)
    return torch.cat(i), torch.cat(j), torch.cat(s)


def _digits(index: Tensor, radius: Tensor) -> Tensor:
    """Decompose a flat stencil index into (n, 3) offsets in [-radius, radius], x most significant."""
    width = 2 * radius + 1
    dz = index % width[:, 2]
    dy = torch.div(index, width[:, 2], rounding_mode="floor") % width[:, 1]
    dx = torch.div(index, width[:, 2] * width[:, 1], rounding_mode="floor")
    return torch.stack([dx, dy, dz], dim=1) - radius


def _expand(counts: Tensor) -> tuple[Tensor, Tensor]:
    """For items with ``counts`` sub-items: (item of each sub-item, rank within its item)."""
    item = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
    first = counts.cumsum(0) - counts
    return item, torch.arange(item.numel(), device=counts.device) - first[item]


# --------------------------------------------------------------------------- block pairs


@dataclass
class _Atoms:
    """Atoms in search order: each block of a block pair is a contiguous run of this order."""

    pos: Tensor  # (N, 3) Å
    frac: Tensor  # (N, 3)
    index: Tensor  # (N,) original atom index

    def __post_init__(self) -> None:
        self.columns = self.pos.T.contiguous()
        self.frac_columns = self.frac.T.contiguous()


@dataclass
class _BlockPairs:
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

    def select(self, mask: Tensor) -> _BlockPairs:
        return _BlockPairs(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


def _padded_size(x: Tensor) -> Tensor:
    """Round block sizes up to 2^k or 1.5 * 2^k, wasting at most 1.5x per side on padding."""
    power = torch.exp2(torch.floor(torch.log2(x.clamp_min(1).double()))).long()
    return torch.where(x <= power, power, torch.where(x <= power * 3 // 2, power * 3 // 2, 2 * power))


def _split(pairs: _BlockPairs, side: str, limit: int) -> _BlockPairs:
    """Cut blocks on one side ("a" or "b") into runs of at most ``limit`` atoms."""
    length = getattr(pairs, f"{side}_len")
    pieces = torch.div(length + limit - 1, limit, rounding_mode="floor").clamp_min(1)
    item, rank = _expand(pieces)
    out = pairs.select(item)
    setattr(out, f"{side}_start", getattr(out, f"{side}_start") + rank * limit)
    setattr(out, f"{side}_len", (getattr(out, f"{side}_len") - rank * limit).clamp(max=limit))
    return out


def _compare_blocks(atoms: _Atoms, pairs: _BlockPairs, cell: Tensor, cutoff: float) -> tuple[Tensor, Tensor, Tensor]:
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
    return _cat(parts, atoms.pos.device)


def _compare_chunk(
    atoms: _Atoms, pairs: _BlockPairs, cell: Tensor, cutoff: float, pad_a: int, pad_b: int
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


def _shifted_dist2(atoms: _Atoms, pairs: _BlockPairs, cells: Tensor, at_a: Tensor, at_b: Tensor) -> Tensor:
    """(P, Ma, Mb) squared distances with one fixed image shift per block pair."""
    image = _times_cell(pairs.shift.to(cells.dtype), cells)
    dist2 = None
    for c in range(3):  # per component: contiguous (P, Ma, Mb) ops are much faster than (..., 3)
        column = atoms.columns[c]
        # difference first, image second: a self image then lands exactly on the cell vector
        d = (column[at_b][:, None, :] - column[at_a][:, :, None]) + image[:, c, None, None]
        dist2 = d * d if dist2 is None else dist2 + d * d
    return dist2


def _nearest_dist2(atoms: _Atoms, pairs: _BlockPairs, cells: Tensor, at_a: Tensor, at_b: Tensor) -> Tensor:
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


# --------------------------------------------------------------------------- dense


def _dense_search(systems: _Systems, cutoff: float) -> tuple[Tensor, Tensor, Tensor]:
    """Every graph against itself, each pair at its nearest image (plus more for small cells).

    Along periodic directions the nearest image in fractional coordinates is used; ``radius``
    extra images either side are needed only when the cell height is below twice the cutoff.
    Offsets are computed on the input positions, so no wrapping is needed.
    """
    device = systems.pos.device
    sizes = systems.sizes
    ratio = cutoff / systems.heights
    radius = torch.where(systems.pbc, torch.ceil(ratio + 0.5) - 1, torch.zeros_like(ratio)).long()
    graph, image = _expand((2 * radius + 1).prod(dim=1))
    pairs = _BlockPairs(
        a_start=systems.ptr[graph],
        a_len=sizes[graph],
        b_start=systems.ptr[graph],
        b_len=sizes[graph],
        shift=_digits(image, radius[graph]),
        nearest=systems.pbc[graph],
        graph=graph,
    )
    atoms = _Atoms(systems.pos, systems.frac, torch.arange(systems.num_atoms, device=device))
    i, j, shifts = _compare_blocks(atoms, pairs, systems.cell, cutoff)
    return _sort_edges(i, j, shifts, systems.num_atoms)


# --------------------------------------------------------------------------- cell list


@dataclass
class _Bins:
    """Binning of wrapped fractional coordinates: per graph (G, 3), per bin and per atom."""

    count: Tensor  # (G, 3) bins per direction
    radius: Tensor  # (G, 3) stencil half-width in bins
    offset: Tensor  # (G,) first global bin id of each graph
    order: Tensor  # (N,) atom indices sorted by global bin id
    start: Tensor  # (num_bins,) first position in ``order`` of each bin
    size: Tensor  # (num_bins,) atoms per bin
    graph: Tensor  # (num_bins,) graph of each bin
    coord: Tensor  # (num_bins, 3) integer coordinates of each bin


def _bin_counts(systems: _Systems, frac: Tensor, cutoff: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per graph: bins per direction, lower corner and bin width (fractional units).

    Bins are at least ``cutoff`` thick (perpendicular), periodic directions span the cell and
    the others the extent of the atoms.
    """
    num_graphs, batch = systems.sizes.numel(), systems.batch
    inf = torch.full((num_graphs, 3), float("inf"), dtype=frac.dtype, device=frac.device)
    idx = batch[:, None].expand(-1, 3)
    low = inf.scatter_reduce(0, idx, frac, "amin", include_self=True)
    high = (-inf).scatter_reduce(0, idx, frac, "amax", include_self=True)
    low = torch.where(systems.pbc, torch.zeros_like(low), low.nan_to_num(0.0, 0.0, 0.0))
    high = torch.where(systems.pbc, torch.ones_like(high), high.nan_to_num(0.0, 0.0, 0.0))
    span = (high - low).clamp_min(0.0)
    count = torch.floor(span * systems.heights / cutoff).clamp_min(1)
    # Sparse systems (vacuum, clusters) would get far more bins than atoms: coarsen uniformly.
    count = _coarsen(count, (2 * systems.sizes + 64).to(count.dtype))
    width = torch.where(span > 0, span / count, torch.ones_like(span))
    return count, low, width


def _coarsen(count: Tensor, limit: Tensor) -> Tensor:
    """(G, 3) bin counts scaled down uniformly until each graph has about ``limit`` bins or fewer.

    Only directions with more than one bin shrink: a flat or linear system (one direction
    already at one bin) is coarsened along the others, never to more bins than ``limit``.
    """
    for _ in range(3):
        excess = (count.prod(dim=1) / limit).clamp_min(1.0)
        free = (count > 1).sum(dim=1).clamp_min(1).to(count.dtype)
        count = torch.floor(count / excess[:, None] ** (1.0 / free[:, None])).clamp_min(1)
    return count


def _bin_atoms(systems: _Systems, frac: Tensor, cutoff: float) -> _Bins:
    count, low, width = _bin_counts(systems, frac, cutoff)
    thickness = width * systems.heights
    radius = torch.where(systems.pbc, torch.ceil(cutoff / thickness), (count > 1).to(count.dtype))
    count, radius, batch = count.long(), radius.long(), systems.batch
    coord = torch.floor((frac - low[batch]) / width[batch]).long()
    coord = torch.minimum(coord.clamp_min(0), count[batch] - 1)
    per_graph = count.prod(dim=1)
    offset = per_graph.cumsum(0) - per_graph
    gid = offset[batch] + _bin_linear(coord, count[batch])
    size = torch.bincount(gid, minlength=int(per_graph.sum()))
    graph, local = _expand(per_graph)
    return _Bins(
        count=count,
        radius=radius,
        offset=offset,
        order=torch.argsort(gid, stable=True),
        start=size.cumsum(0) - size,
        size=size,
        graph=graph,
        coord=_bin_coords(local, count[graph]),
    )


def _bin_linear(coord: Tensor, count: Tensor) -> Tensor:
    return (coord[:, 0] * count[:, 1] + coord[:, 1]) * count[:, 2] + coord[:, 2]


def _bin_coords(linear: Tensor, count: Tensor) -> Tensor:
    z = linear % count[:, 2]
    y = torch.div(linear, count[:, 2], rounding_mode="floor") % count[:, 1]
    x = torch.div(linear, count[:, 2] * count[:, 1], rounding_mode="floor")
    return torch.stack([x, y, z], dim=1)


def _cell_list_search(systems: _Systems, cutoff: float) -> tuple[Tensor, Tensor, Tensor]:
    """Compare each bin with its neighbouring bins (27 for ordinary cells).

    Bins are at least ``cutoff`` thick, so neighbours lie at most ``radius`` bins away
    (radius > 1 only for cells thinner than the cutoff); periodic directions wrap around and
    record the image shift of the target bin.
    """
    device = systems.pos.device
    if systems.num_atoms == 0:
        return _empty(device)
    pos, frac, wraps = _wrap(systems)
    bins = _bin_atoms(systems, frac, cutoff)
    occupied = (bins.size > 0).nonzero().flatten()
    stencil = (2 * bins.radius + 1).prod(dim=1)[bins.graph[occupied]]
    source, step = _expand(stencil)
    source = occupied[source]
    graph = bins.graph[source]
    target, shift, valid = _target_bins(
        systems.pbc[graph], bins.coord[source] + _digits(step, bins.radius[graph]), bins.count[graph]
    )
    target = bins.offset[graph] + _bin_linear(target, bins.count[graph])
    pairs = _BlockPairs(
        a_start=bins.start[source],
        a_len=bins.size[source],
        b_start=bins.start[target],
        b_len=torch.where(valid, bins.size[target], 0),
        shift=shift,
        nearest=torch.zeros_like(shift, dtype=torch.bool),
        graph=graph,
    )
    atoms = _Atoms(pos[bins.order], frac[bins.order], bins.order)
    i, j, shifts = _compare_blocks(atoms, pairs, systems.cell, cutoff)
    return _sort_edges(i, j, shifts - wraps[j] + wraps[i], systems.num_atoms)


def _target_bins(periodic: Tensor, target: Tensor, count: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Wrap target bins along periodic directions; flag out-of-range ones elsewhere."""
    shift = torch.div(target, count, rounding_mode="floor")
    shift = torch.where(periodic, shift, torch.zeros_like(shift))
    target = target - shift * count
    valid = ((target >= 0) & (target < count)).all(dim=1)
    return target.clamp(min=0).minimum(count - 1), shift, valid


# --------------------------------------------------------------------------- vesin


def _vesin_available() -> bool:
    try:
        import vesin  # noqa: F401
    except ImportError:
        return False
    return True


def _vesin_search(systems: _Systems, cutoff: float) -> tuple[Tensor, Tensor, Tensor]:
    """One vesin call per graph on wrapped positions (CPU, float64)."""
    try:
        from vesin import NeighborList as VesinNeighborList
    except ImportError as error:
        raise ValueError("method='vesin' needs the optional 'vesin' package") from error
    if _vesin_cells(systems, cutoff) > _VESIN_MAX_CELLS:
        return _cell_list_search(systems, cutoff)
    device = systems.pos.device
    pos, _, wraps = _wrap(systems)
    pos_np, cell_np = pos.cpu().numpy(), systems.cell.cpu().numpy()
    ptr, pbc = systems.ptr.tolist(), systems.pbc.cpu().tolist()
    search = VesinNeighborList(cutoff=cutoff, full_list=True, n_threads=torch.get_num_threads())
    parts = []
    for g in range(len(ptr) - 1):
        if ptr[g + 1] - ptr[g] < 1:
            continue
        box = cell_np[g] if any(pbc[g]) else 0.0 * cell_np[g]
        i, j, s = search.compute(pos_np[ptr[g] : ptr[g + 1]], box, pbc[g], quantities="ijS")
        parts.append(_vesin_edges(i, j, s, ptr[g], device))
    i, j, s = _cat(parts, device)
    return _sort_edges(i, j, s - wraps[j] + wraps[i], systems.num_atoms)


def _vesin_cells(systems: _Systems, cutoff: float) -> float:
    """Most cutoff-sized cells vesin would make for one graph (cell heights along periodic
    directions, the atoms' extent along the others)."""
    if systems.num_atoms == 0:
        return 0.0
    idx = systems.batch[:, None].expand(-1, 3)
    inf = torch.full_like(systems.heights, float("inf"))
    low = inf.scatter_reduce(0, idx, systems.pos, "amin", include_self=True)
    high = (-inf).scatter_reduce(0, idx, systems.pos, "amax", include_self=True)
    extent = torch.where(systems.pbc, systems.heights, (high - low).nan_to_num(0.0, 0.0, 0.0))
    return float((extent / cutoff).floor().clamp_min(1).prod(dim=1).max())


def _vesin_edges(i, j, shifts, first: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    as_long = lambda a: torch.from_numpy(a.astype("int64")).to(device)  # noqa: E731
    return as_long(i) + first, as_long(j) + first, as_long(shifts).reshape(-1, 3)


_SEARCHES = {"dense": _dense_search, "cell_list": _cell_list_search, "vesin": _vesin_search}
