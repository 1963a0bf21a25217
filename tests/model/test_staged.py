"""``visnet.model.staged``: a staged radius graph gives its target atoms the outputs (and the
gradients of their sum) of the whole graph while the outer stages run on fewer edges."""

from __future__ import annotations

import pytest
import torch

from visnet import ViSNet
from visnet.model.staged import StagedNeighborList, message_hops, stage_neighbors
from visnet.neighbors import radius_graph

# float64: staging only reorders the edges (scatter sums add in another order), ~1e-15 relative.
RTOL, ATOL = 1e-12, 1e-12


def slab_of_atoms(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """H/C/O atoms at random in a 24 x 6 x 6 Å box (periodic in y and z), no pair under 1 Å; the
    atoms with x < 6 Å come first. Returns z (N,), pos (N, 3) Å, cell (1, 3, 3), pbc (1, 3), targets."""
    gen = torch.Generator().manual_seed(seed)
    size = torch.tensor([24.0, 6.0, 6.0], dtype=torch.float64)
    kept: list[torch.Tensor] = []
    while len(kept) < 80:
        p = torch.rand(3, generator=gen, dtype=torch.float64) * size
        if all(((p - q + size / 2) % size - size / 2)[1:].norm() ** 2 + (p - q)[0] ** 2 > 1.0 for q in kept):
            kept.append(p)
    pos = torch.stack(kept)
    pos = pos[torch.argsort(pos[:, 0] >= 6.0, stable=True)]
    z = torch.tensor([1, 6, 8])[torch.randint(0, 3, (len(pos),), generator=gen)]
    cell = torch.diag(size).unsqueeze(0)
    return z, pos, cell, torch.tensor([[False, True, True]]), int((pos[:, 0] < 6.0).sum())


@pytest.mark.parametrize(("lmax", "vertex"), [(1, False), (2, True)])
def test_staged_targets_equal_the_whole_graph(lmax, vertex):
    torch.manual_seed(0)
    model = ViSNet(hidden_channels=16, num_layers=3, num_heads=2, num_rbf=8, lmax=lmax, vertex=vertex, cutoff=3.0)
    model = model.double().eval()
    z, pos, cell, pbc, targets = slab_of_atoms()
    graph = radius_graph(pos, model.cutoff, None, cell, pbc, self_loops=True)
    staged = stage_neighbors(graph, len(z), targets, num_layers=3)
    assert isinstance(staged, StagedNeighborList) and staged.targets == targets
    edges = staged.stage_edges
    assert graph.num_edges > edges[0] > edges[1] > edges[2] > edges[3] > 0  # every stage drops edges

    def targets_energy(neighbors) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p = pos.clone().requires_grad_(True)
        atomic = model(z, p, cell=cell, pbc=pbc, compute_forces=False, neighbors=neighbors)["atomic_energy"]
        (grad,) = torch.autograd.grad(atomic[:targets].sum(), p)
        return atomic.detach(), atomic[:targets].sum().detach(), grad

    whole, staged_out = targets_energy(graph), targets_energy(staged)
    torch.testing.assert_close(staged_out[1], whole[1], rtol=RTOL, atol=0.0)
    torch.testing.assert_close(staged_out[0][:targets], whole[0][:targets], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(staged_out[2], whole[2], rtol=0.0, atol=ATOL)
    assert whole[2][targets:].abs().max() > 1e-3  # the targets' energy does depend on the other atoms
    assert not torch.allclose(staged_out[0][targets:], whole[0][targets:])  # the outer stages were cut


def test_one_stage_less_is_not_enough():
    """Layer k needs the edges of centres up to L − k hops from a target: cutting each stage by one
    more hop changes the targets' energy (the staging is as small as it can be)."""
    torch.manual_seed(1)
    model = ViSNet(hidden_channels=16, num_layers=3, num_heads=2, num_rbf=8, cutoff=3.0).double().eval()
    z, pos, cell, pbc, targets = slab_of_atoms(1)
    graph = radius_graph(pos, model.cutoff, None, cell, pbc, self_loops=True)
    staged = stage_neighbors(graph, len(z), targets, num_layers=3)
    hops = message_hops(staged.edge_index, len(z), targets, 3).index_select(0, staged.edge_index[1])
    energies = []
    for cut in (0, 1):
        stages = tuple(int((hops <= 3 - k - cut).sum()) for k in range(4))
        trimmed = StagedNeighborList(staged.edge_index, staged.cell_offsets, targets, stages)
        atomic = model(z, pos, cell=cell, pbc=pbc, compute_forces=False, neighbors=trimmed)["atomic_energy"]
        energies.append(float(atomic[:targets].sum().detach()))
    assert stages[0] < staged.stage_edges[0]
    assert abs(energies[1] - energies[0]) > 1e-8


def test_message_hops_along_a_chain():
    pos = torch.zeros(8, 3, dtype=torch.float64)
    pos[:, 0] = 2.0 * torch.arange(8)  # cutoff 3 Å: only next neighbours are edges
    graph = radius_graph(pos, 3.0, self_loops=True)
    assert message_hops(graph.edge_index, 8, 1, depth=4).tolist() == [0, 1, 2, 3, 4, 5, 5, 5]
    assert message_hops(graph.edge_index, 8, 0, depth=2).tolist() == [3] * 8  # no target: all beyond


def test_stage_count_must_match_the_layers():
    model = ViSNet(hidden_channels=16, num_layers=2, num_heads=2, num_rbf=8).double()
    z, pos, cell, pbc, targets = slab_of_atoms()
    graph = radius_graph(pos, model.cutoff, None, cell, pbc, self_loops=True)
    staged = stage_neighbors(graph, len(z), targets, num_layers=3)
    with pytest.raises(ValueError, match="stage_edges has 4 entries; this model has 2 layers, so it needs 3"):
        model(z, pos, cell=cell, pbc=pbc, neighbors=staged)
    with pytest.raises(ValueError, match="targets must be between 0 and the 80 atoms, got 81"):
        stage_neighbors(graph, len(z), 81, num_layers=3)
