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

__all__ = ["NeighborList", "radius_graph", "AUTO_DENSE_MAX_ATOMS"]

# Largest graph (atoms) for which method="auto" uses the dense search; measured on one CPU
# thread: dense and cell_list cost the same at about this size for water-density systems.
AUTO_DENSE_MAX_ATOMS = 256
# Candidate pairs per chunk: bounds the temporary memory to roughly 100 MB.
_CHUNK_PAIRS = 1 << 20
_METHODS = ("auto", "dense", "cell_list", "vesin")


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
        pbc: (num_graphs, 3) or (3,) bool periodic directions; None means all periodic when
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
            non-positive cutoff, singular periodic cell, pbc without cell, unknown method).
    """
    _check_pos(pos)
    cutoff = _check_cutoff(cutoff)
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {_METHODS}")
    with torch.no_grad():
        systems = _prepare(pos, batch, cell, pbc)
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
        raise ValueError(
            f"cell must have shape (3, 3) or (num_graphs={num_graphs}, 3, 3), "
            f"got {tuple(cell.shape)}"
        )
    if not bool(torch.isfinite(cell).all()):
        raise ValueError("cell has non-finite entries")
    return cell


def _check_pbc(pbc: Tensor | None, has_cell: bool, num_graphs: int, device: torch.device) -> Tensor:
    if pbc is None:
        return torch.full((num_graphs, 3), has_cell, dtype=torch.bool, device=device)
    pbc = torch.as_tensor(pbc, device=device)
    if pbc.dtype != torch.bool:
        raise ValueError(f"pbc must be boolean, got {pbc.dtype}")
    if pbc.shape == (3,):
        pbc = pbc.expand(num_graphs, 3)
    if pbc.shape != (num_graphs, 3):
        raise ValueError(
            f"pbc must have shape (3,) or (num_graphs={num_graphs}, 3), got {tuple(pbc.shape)}"
        )
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
    frac = torch.einsum("nk,nkl->nl", pos64, torch.linalg.inv(search_cell)[batch])
    return _Systems(pos64, batch, ptr, search_cell, pbc_t.clone(), _heights(search_cell), frac)


def _heights(cell: Tensor) -> Tensor:
    """(G, 3) perpendicular heights: volume / area of the face spanned by the other two rows."""
    volume = torch.linalg.det(cell).abs()
    areas = torch.stack(
        [torch.linalg.cross(cell[:, (k + 1) % 3], cell[:, (k + 2) % 3]).norm(dim=-1) for k in range(3)],
        dim=1,
    )
    return volume[:, None] / areas.clamp_min(torch.finfo(torch.float64).tiny)


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
    pos = systems.pos - torch.einsum("nk,nkl->nl", wraps, systems.cell[systems.batch])
    return pos, frac, wraps.long()


def _unwrap_shifts(i: Tensor, j: Tensor, shifts: Tensor, wraps: Tensor) -> Tensor:
    """Offsets valid for the wrapped positions -> offsets valid for the input positions."""
    return shifts - wraps[j] + wraps[i]


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


def _keep(i: Tensor, j: Tensor, shifts: Tensor, vec: Tensor, cutoff: float) -> Tensor:
    """Mask of candidates inside the cutoff, excluding (i, i, 0)."""
    inside = (vec * vec).sum(dim=1) < cutoff * cutoff
    return inside & ((i != j) | shifts.any(dim=1))


def _chunks(total: Tensor, budget: int) -> list[tuple[int, int]]:
    """Split items with cumulative cost ``total`` (inclusive cumsum) into [start, end) runs."""
    if total.numel() == 0:
        return []
    group = torch.div(total - 1, budget, rounding_mode="floor").clamp_min(0)
    sizes = torch.unique_consecutive(group, return_counts=True)[1].tolist()
    bounds, start = [], 0
    for size in sizes:
        bounds.append((start, start + size))
        start += size
    return bounds


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


# --------------------------------------------------------------------------- dense


def _dense_search(systems: _Systems, cutoff: float) -> tuple[Tensor, Tensor, Tensor]:
    """All pairs of each graph, each with the few images that can be within the cutoff.

    The fractional difference is first mapped to its nearest image; ``radius`` extra images per
    periodic direction are needed only when the cell height is below twice the cutoff.
    """
    device = systems.pos.device
    sizes = systems.sizes
    ratio = cutoff / systems.heights
    radius = torch.where(systems.pbc, torch.ceil(ratio + 0.5) - 1, torch.zeros_like(ratio)).long()
    images = (2 * radius + 1).prod(dim=1)
    cost = sizes * sizes * images
    end = cost.cumsum(0)
    total = int(end[-1]) if end.numel() else 0
    parts = []
    for start in range(0, total, _CHUNK_PAIRS):
        flat = torch.arange(start, min(start + _CHUNK_PAIRS, total), device=device)
        parts.append(_dense_chunk(systems, flat, end, radius, images, cutoff))
    return _cat(parts, device)


def _dense_chunk(
    systems: _Systems, flat: Tensor, end: Tensor, radius: Tensor, images: Tensor, cutoff: float
) -> tuple[Tensor, Tensor, Tensor]:
    # flat enumerates (graph, i, j, image) in that lexicographic order, so output is sorted.
    g = torch.searchsorted(end, flat, right=True)
    local = flat - (end[g] - (systems.sizes[g] ** 2) * images[g])
    n, k = systems.sizes[g], images[g]
    i = systems.ptr[g] + torch.div(local, n * k, rounding_mode="floor")
    rest = local % (n * k)
    j = systems.ptr[g] + torch.div(rest, k, rounding_mode="floor")
    nearest = torch.round(systems.frac[i] - systems.frac[j])
    nearest = torch.where(systems.pbc[g], nearest, torch.zeros_like(nearest)).long()
    shifts = nearest + _digits(rest % k, radius[g])
    vec = systems.pos[j] - systems.pos[i] + torch.einsum("ek,ekl->el", shifts.double(), systems.cell[g])
    keep = _keep(i, j, shifts, vec, cutoff)
    return i[keep], j[keep], shifts[keep]


# --------------------------------------------------------------------------- cell list


@dataclass
class _Bins:
    """Binning of wrapped fractional coordinates, per graph (G, 3) and per atom."""

    count: Tensor  # (G, 3) bins per direction
    radius: Tensor  # (G, 3) stencil half-width in bins
    coord: Tensor  # (N, 3) bin of each atom
    offset: Tensor  # (G,) first global bin id of each graph
    atoms: Tensor  # (N,) atom indices sorted by global bin id
    start: Tensor  # (num_bins,) first position in ``atoms`` of each bin
    size: Tensor  # (num_bins,) atoms per bin


def _bin_atoms(systems: _Systems, frac: Tensor, cutoff: float) -> _Bins:
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
    limit = (2 * systems.sizes + 64).to(count.dtype)
    factor = (count.prod(dim=1) / limit).clamp_min(1.0) ** (1.0 / 3.0)
    count = torch.floor(count / factor[:, None]).clamp_min(1)
    width = torch.where(span > 0, span / count, torch.ones_like(span))
    thickness = width * systems.heights
    radius = torch.where(systems.pbc, torch.ceil(cutoff / thickness), (count > 1).to(count.dtype))
    count, radius = count.long(), radius.long()
    coord = torch.floor((frac - low[batch]) / width[batch]).long()
    coord = torch.minimum(coord.clamp_min(0), count[batch] - 1)
    return _sort_into_bins(count, radius, coord, batch)


def _sort_into_bins(count: Tensor, radius: Tensor, coord: Tensor, batch: Tensor) -> _Bins:
    per_graph = count.prod(dim=1)
    offset = per_graph.cumsum(0) - per_graph
    gid = offset[batch] + _bin_linear(coord, count[batch])
    atoms = torch.argsort(gid, stable=True)
    size = torch.bincount(gid, minlength=int(per_graph.sum()))
    start = size.cumsum(0) - size
    return _Bins(count, radius, coord, offset, atoms, start, size)


def _bin_linear(coord: Tensor, count: Tensor) -> Tensor:
    return (coord[:, 0] * count[:, 1] + coord[:, 1]) * count[:, 2] + coord[:, 2]


def _cell_list_search(systems: _Systems, cutoff: float) -> tuple[Tensor, Tensor, Tensor]:
    """Compare each atom with the atoms of its neighbouring bins (27 for ordinary cells).

    Bins have a perpendicular thickness >= cutoff, so neighbours lie at most ``radius`` bins
    away; periodic directions wrap around and record the image shift of the target bin.
    """
    device = systems.pos.device
    if systems.num_atoms == 0:
        return _empty(device)
    pos, frac, wraps = _wrap(systems)
    bins = _bin_atoms(systems, frac, cutoff)
    stencil = (2 * bins.radius + 1).prod(dim=1)[systems.batch]
    per_atom = _estimate_candidates(systems, bins, stencil)
    parts = []
    for lo, hi in _chunks(per_atom.cumsum(0), _CHUNK_PAIRS):
        i, j, s = _cell_list_atoms(systems, bins, pos, stencil, lo, hi, cutoff)
        parts.append(_sort_edges(i, j, _unwrap_shifts(i, j, s, wraps), systems.num_atoms))
    return _cat(parts, device)


def _estimate_candidates(systems: _Systems, bins: _Bins, stencil: Tensor) -> Tensor:
    """Approximate candidates per atom, at least its stencil size, to size the chunks."""
    occupancy = (systems.sizes / bins.count.prod(dim=1)).clamp_min(1.0)
    return (stencil * occupancy[systems.batch]).ceil().long()


def _cell_list_atoms(
    systems: _Systems, bins: _Bins, pos: Tensor, stencil: Tensor, lo: int, hi: int, cutoff: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Candidate pairs for centre atoms lo..hi-1 (entries = atom x stencil offset)."""
    device = pos.device
    atom = torch.repeat_interleave(torch.arange(lo, hi, device=device), stencil[lo:hi])
    first = torch.repeat_interleave(stencil[lo:hi].cumsum(0) - stencil[lo:hi], stencil[lo:hi])
    g = systems.batch[atom]
    step = _digits(torch.arange(atom.numel(), device=device) - first, bins.radius[g])
    target, shift, valid = _target_bins(systems.pbc[g], bins.coord[atom] + step, bins.count[g])
    gid = bins.offset[g] + _bin_linear(target, bins.count[g])
    size = torch.where(valid, bins.size[gid], torch.zeros_like(gid))
    entry = torch.repeat_interleave(torch.arange(atom.numel(), device=device), size)
    rank = torch.arange(entry.numel(), device=device) - (size.cumsum(0) - size)[entry]
    i, j = atom[entry], bins.atoms[bins.start[gid[entry]] + rank]
    image = torch.einsum("ek,ekl->el", shift.double(), systems.cell[g])
    vec = pos[j] - pos[i] + image[entry]
    shifts = shift[entry]
    keep = _keep(i, j, shifts, vec, cutoff)
    return i[keep], j[keep], shifts[keep]


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
    return _sort_edges(i, j, _unwrap_shifts(i, j, s, wraps), systems.num_atoms)


def _vesin_edges(i, j, shifts, first: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    as_long = lambda a: torch.from_numpy(a.astype("int64")).to(device)  # noqa: E731
    return as_long(i) + first, as_long(j) + first, as_long(shifts).reshape(-1, 3)


_SEARCHES = {"dense": _dense_search, "cell_list": _cell_list_search, "vesin": _vesin_search}
