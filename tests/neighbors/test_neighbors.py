"""Radius graph tests: every back end against ASE's neighbour list and against each other."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list
from hypothesis import given, settings
from hypothesis import strategies as st

from visnet.neighbors import NeighborList, radius_graph

torch.set_num_threads(1)

HAS_VESIN = importlib.util.find_spec("vesin") is not None
METHODS = [
    "dense",
    "cell_list",
    pytest.param("vesin", marks=pytest.mark.skipif(not HAS_VESIN, reason="vesin not installed")),
    "auto",
]
TRICLINIC = np.array([[6.0, 0.0, 0.0], [2.0, 5.0, 0.0], [1.0, 1.5, 5.5]])


def ase_edges(pos: np.ndarray, cell: np.ndarray, pbc, cutoff: float) -> set:
    """(centre i, neighbour j, image) triples from ASE."""
    atoms = Atoms(numbers=np.ones(len(pos), dtype=int), positions=pos, cell=cell, pbc=pbc)
    i, j, shifts = neighbor_list("ijS", atoms, cutoff)
    return set(zip(i.tolist(), j.tolist(), map(tuple, shifts.tolist())))


def edges(nl: NeighborList) -> set:
    j, i = nl.edge_index.tolist()
    return set(zip(i, j, map(tuple, nl.cell_offsets.round().long().tolist())))


def compute(pos, cutoff, cell=None, pbc=None, **kwargs) -> NeighborList:
    as_tensor = lambda x: None if x is None else torch.as_tensor(x)  # noqa: E731
    return radius_graph(torch.as_tensor(pos), cutoff, cell=as_tensor(cell), pbc=as_tensor(pbc), **kwargs)


def edge_vectors(nl: NeighborList, pos: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    j, i = nl.edge_index
    return pos[j] + torch.einsum("ek,ekl->el", nl.cell_offsets, cell[batch[i]]) - pos[i]


def check_sorted(nl: NeighborList) -> None:
    j, i = nl.edge_index
    rows = torch.cat([i[:, None], j[:, None], nl.cell_offsets.long()], dim=1).tolist()
    assert rows == sorted(rows)
    assert len(set(map(tuple, rows))) == len(rows)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.mark.parametrize("method", METHODS)
def test_molecule_matches_ase(rng, method):
    pos = rng.random((40, 3)) * 8.0
    nl = compute(pos, 3.0, method=method)
    assert edges(nl) == ase_edges(pos, np.zeros((3, 3)), False, 3.0)
    assert not nl.cell_offsets.any()
    check_sorted(nl)


@pytest.mark.parametrize("method", METHODS)
def test_batch_has_no_cross_edges(rng, method):
    sizes = [7, 15, 11]
    mols = [rng.random((n, 3)) * 4.0 for n in sizes]  # overlapping boxes: cross edges would exist
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    nl = radius_graph(torch.tensor(np.concatenate(mols)), 3.0, batch=batch, method=method)
    assert (batch[nl.edge_index[0]] == batch[nl.edge_index[1]]).all()
    first = np.cumsum([0] + sizes)
    for g, mol in enumerate(mols):
        ours = {(i - first[g], j - first[g], s) for i, j, s in edges(nl) if first[g] <= i < first[g + 1]}
        assert ours == ase_edges(mol, np.zeros((3, 3)), False, 3.0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "name, cell, pbc, cutoff",
    [
        ("cubic", np.eye(3) * 10.0, (True, True, True), 4.0),
        ("triclinic", TRICLINIC, (True, True, True), 4.0),
        ("tiny", np.array([[2.0, 0.0, 0.0], [0.5, 2.2, 0.0], [0.3, 0.2, 1.8]]), (True, True, True), 4.5),
        ("mixed", TRICLINIC, (True, True, False), 4.0),
        ("slab_zero_c", np.diag([6.0, 6.0, 0.0]), (True, True, False), 4.0),
        ("wire", TRICLINIC, (False, False, True), 4.0),
    ],
)
def test_periodic_matches_ase(rng, method, name, cell, pbc, cutoff):
    extent = cell if np.linalg.det(cell) != 0 else np.diag([6.0, 6.0, 10.0])
    pos = rng.random((5 if name == "tiny" else 50, 3)) @ extent
    nl = compute(pos, cutoff, cell=cell, pbc=pbc, method=method)
    assert edges(nl) == ase_edges(pos, cell, pbc, cutoff)
    check_sorted(nl)
    if name == "tiny":  # several images, including images of an atom itself
        assert any(i == j for i, j, _ in edges(nl))
        assert nl.cell_offsets.abs().max() >= 2


@pytest.mark.parametrize("method", METHODS)
def test_unwrapped_positions(rng, method):
    pos = (rng.random((50, 3)) * 3.0 - 1.0) @ TRICLINIC  # most atoms outside the cell
    nl = compute(pos, 4.0, cell=TRICLINIC, method=method)
    assert edges(nl) == ase_edges(pos, TRICLINIC, True, 4.0)
    vec = edge_vectors(nl, torch.tensor(pos), torch.tensor(TRICLINIC)[None], torch.zeros(50, dtype=torch.long))
    assert (vec.norm(dim=1) < 4.0).all()


@pytest.mark.parametrize("method", METHODS)
def test_batch_of_periodic_cells(rng, method):
    cells = [np.eye(3) * 7.0, TRICLINIC, np.diag([3.0, 4.0, 5.0])]
    pbcs = [(True, True, True), (True, False, True), (True, True, True)]
    sizes = [20, 30, 8]
    mols = [rng.random((n, 3)) @ c for n, c in zip(sizes, cells)]
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    nl = radius_graph(
        torch.tensor(np.concatenate(mols)),
        4.0,
        batch=batch,
        cell=torch.tensor(np.stack(cells)),
        pbc=torch.tensor(pbcs),
        method=method,
    )
    first = np.cumsum([0] + sizes)
    for g in range(3):
        ours = {(i - first[g], j - first[g], s) for i, j, s in edges(nl) if first[g] <= i < first[g + 1]}
        assert ours == ase_edges(mols[g], cells[g], pbcs[g], 4.0)
    check_sorted(nl)


def test_edge_vectors_within_cutoff(rng):
    cells = torch.tensor(np.stack([TRICLINIC, np.eye(3) * 3.0]))
    pos = torch.tensor(np.concatenate([rng.random((30, 3)) @ TRICLINIC, rng.random((10, 3)) * 9.0 - 3.0]))
    batch = torch.repeat_interleave(torch.arange(2), torch.tensor([30, 10]))
    for method in ("dense", "cell_list"):
        nl = radius_graph(pos, 5.0, batch=batch, cell=cells, method=method)
        vec = edge_vectors(nl, pos, cells, batch)
        assert nl.num_edges > 0 and (vec.norm(dim=1) < 5.0).all()


def _large_cases():
    rng = np.random.default_rng(7)
    box = (2000 / 0.1) ** (1 / 3)  # water-like atom density
    periodic = (rng.random((2000, 3)) * box, np.eye(3) * box, True)
    cluster = (rng.random((600, 3)) * (600 / 0.1) ** (1 / 3), None, None)
    return [pytest.param(*periodic, id="box2000"), pytest.param(*cluster, id="cluster600")]


@pytest.mark.parametrize("pos, cell, pbc", _large_cases())
def test_methods_identical_on_large_systems(pos, cell, pbc):
    methods = ["dense", "cell_list"] + (["vesin"] if HAS_VESIN else [])
    results = [compute(pos, 5.0, cell=cell, pbc=pbc, method=m) for m in methods]
    for other in results[1:]:
        assert torch.equal(other.edge_index, results[0].edge_index)
        assert torch.equal(other.cell_offsets, results[0].cell_offsets)
    check_sorted(results[0])
    assert results[0].num_edges > 20 * len(pos)


@pytest.mark.parametrize("method", METHODS)
def test_self_loops_appended(rng, method):
    pos = torch.tensor(rng.random((12, 3)) * 5.0)
    cell = torch.eye(3, dtype=torch.float64) * 5.0
    plain = radius_graph(pos, 3.0, cell=cell, method=method)
    looped = radius_graph(pos, 3.0, cell=cell, self_loops=True, method=method)
    assert looped.num_edges == plain.num_edges + 12
    assert torch.equal(looped.edge_index[:, : plain.num_edges], plain.edge_index)
    assert torch.equal(looped.edge_index[:, plain.num_edges :], torch.arange(12).repeat(2, 1))
    assert not looped.cell_offsets[plain.num_edges :].any()
    assert not ((plain.edge_index[0] == plain.edge_index[1]) & ~plain.cell_offsets.any(dim=1)).any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", METHODS)
def test_dtypes(rng, dtype, method):
    pos = torch.tensor(rng.random((40, 3)) @ TRICLINIC, dtype=dtype)
    cell = torch.tensor(TRICLINIC, dtype=dtype)
    nl = radius_graph(pos, 4.0, cell=cell, method=method)
    assert nl.edge_index.dtype == torch.long and nl.cell_offsets.dtype == dtype
    assert edges(nl) == ase_edges(pos.double().numpy(), cell.double().numpy(), True, 4.0)
    vec = edge_vectors(nl, pos, cell[None], torch.zeros(40, dtype=torch.long))
    assert (vec.norm(dim=1) < 4.0).all()


def test_no_autograd_and_empty_inputs():
    pos = torch.rand(10, 3, requires_grad=True)
    nl = radius_graph(pos, 2.0)
    assert not nl.edge_index.requires_grad and not nl.cell_offsets.requires_grad
    for method in ("dense", "cell_list"):
        empty = radius_graph(torch.zeros(0, 3), 2.0, method=method)
        assert empty.edge_index.shape == (2, 0) and empty.cell_offsets.shape == (0, 3)
    single = radius_graph(torch.zeros(1, 3), 2.0, self_loops=True)
    assert single.edge_index.tolist() == [[0], [0]]


def test_empty_graph_in_batch(rng):
    pos = torch.tensor(rng.random((10, 3)) * 3.0)
    batch = torch.tensor([0] * 4 + [2] * 6)  # graph 1 has no atoms
    cell = torch.eye(3, dtype=torch.float64).repeat(3, 1, 1) * 3.0
    results = [radius_graph(pos, 2.0, batch=batch, cell=cell, method=m) for m in ("dense", "cell_list")]
    assert torch.equal(results[0].edge_index, results[1].edge_index)
    assert (batch[results[0].edge_index[0]] == batch[results[0].edge_index[1]]).all()


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    num_atoms=st.integers(1, 25),
    cutoff=st.floats(1.0, 6.0),
    pbc=st.tuples(st.booleans(), st.booleans(), st.booleans()),
)
def test_random_systems_match_ase(seed, num_atoms, cutoff, pbc):
    rng = np.random.default_rng(seed)
    cell = np.diag(rng.uniform(2.0, 9.0, 3)) + np.tril(rng.uniform(-1.5, 1.5, (3, 3)), -1)
    pos = rng.uniform(-0.5, 1.5, (num_atoms, 3)) @ cell
    expected = ase_edges(pos, cell, pbc, cutoff)
    for method in ("dense", "cell_list"):
        assert edges(compute(pos, cutoff, cell=cell, pbc=pbc, method=method)) == expected


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pos=torch.tensor([[0.0, 0, 0], [1, float("nan"), 0], [2, 0, float("inf")]])), "atom 1"),
        (dict(pbc=torch.tensor([True, True, True])), "periodic system needs a cell"),
        (dict(batch=torch.tensor([0, 0])), "batch must have shape"),
        (dict(batch=torch.tensor([0, 1, 0])), "sorted"),
        (dict(cutoff=0.0), "cutoff"),
        (dict(cutoff=-1.0), "cutoff"),
        (dict(pos=torch.zeros(3, 2)), "pos must be"),
        (dict(cell=torch.zeros(3, 3)), "graph 0"),
        (dict(cell=torch.diag(torch.tensor([1.0, 1.0, 0.0])), pbc=torch.tensor([True, True, True])), "singular"),
        (dict(cell=torch.eye(3).repeat(2, 1, 1), batch=torch.tensor([0, 0, 1]), pbc=torch.tensor([True] * 3)), None),
        (dict(cell=torch.eye(3).repeat(2, 1, 1), batch=torch.tensor([0, 1, 2])), "graph 2"),
        (dict(cell=torch.eye(2)), "cell must have shape"),
        (dict(method="octree"), "unknown method"),
    ],
)
def test_bad_input(kwargs, message):
    args = dict(pos=torch.rand(3, 3), cutoff=2.0) | kwargs
    if message is None:  # valid call used as a control
        radius_graph(**args)
        return
    with pytest.raises(ValueError, match=message):
        radius_graph(**args)


def test_singular_cell_names_graph():
    cell = torch.stack([torch.eye(3), torch.zeros(3, 3)])
    with pytest.raises(ValueError, match="graph 1"):
        radius_graph(torch.rand(4, 3), 2.0, batch=torch.tensor([0, 0, 1, 1]), cell=cell)
    # a zero cell is fine for a graph without periodic directions
    pbc = torch.tensor([[True, True, True], [False, False, False]])
    radius_graph(torch.rand(4, 3), 2.0, batch=torch.tensor([0, 0, 1, 1]), cell=cell, pbc=pbc)
