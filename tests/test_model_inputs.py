"""Bad input to the model API gives a ValueError that names the problem — never NaN, never a
traceback from inside torch."""

from __future__ import annotations

import pytest
import torch

from visnet import ViSNet


@pytest.fixture(scope="module")
def model() -> ViSNet:
    torch.manual_seed(0)
    return ViSNet(hidden_channels=16, num_layers=2, num_heads=2, num_rbf=8, cutoff=4.0).double().eval()


def water() -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.tensor([8, 1, 1])
    pos = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]], dtype=torch.float64)
    return z, pos


@pytest.mark.parametrize(
    "bad_z,needle", [(0, "atom 1 has atomic number 0"), (100, "atom 1 has atomic number 100"), (-3, "atom 1")]
)
def test_atomic_number_out_of_range(model, bad_z, needle):
    z, pos = water()
    z[1] = bad_z
    with pytest.raises(ValueError, match=needle):
        model(z, pos)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_position_names_the_atom(model, value):
    z, pos = water()
    pos[2, 1] = value
    with pytest.raises(ValueError, match="atom 2 is not finite"):
        model(z, pos)


def test_misshaped_positions(model):
    z, pos = water()
    with pytest.raises(ValueError, match=r"pos must have shape \(num_atoms, 3\)"):
        model(z, pos[:, :2])
    with pytest.raises(ValueError, match="pos has 2 rows but z has 3 atoms"):
        model(z, pos[:2])


def test_float_atomic_numbers_and_dtype_mismatch(model):
    z, pos = water()
    with pytest.raises(ValueError, match="integer atomic numbers"):
        model(z.double(), pos)
    with pytest.raises(ValueError, match="dtype torch.float32 but the model is torch.float64"):
        model(z, pos.float())


def test_mismatched_batch(model):
    z, pos = water()
    with pytest.raises(ValueError, match=r"batch must have shape \(3,\)"):
        model(z, pos, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="sorted"):
        model(z, pos, torch.tensor([1, 0, 1]))


def test_coincident_atoms_are_named(model):
    z, pos = water()
    pos[2] = pos[1]
    with pytest.raises(ValueError, match="atoms [12] and [12] are coincident"):
        model(z, pos)


def test_periodic_without_cell(model):
    z, pos = water()
    with pytest.raises(ValueError, match="periodic system needs a cell"):
        model(z, pos, pbc=torch.tensor([True, True, True]))


def test_stress_without_cell(model):
    z, pos = water()
    with pytest.raises(ValueError, match="no periodic cell"):
        model(z, pos, compute_stress=True)


def test_empty_structure(model):
    with pytest.raises(ValueError, match="empty structure"):
        model(torch.zeros(0, dtype=torch.long), torch.zeros(0, 3, dtype=torch.float64))


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="lmax must be 1 or 2"):
        ViSNet(lmax=3)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        ViSNet(hidden_channels=30, num_heads=8)
    with pytest.raises(ValueError, match="vecnorm_type"):
        ViSNet(vecnorm_type="layer")
    with pytest.raises(ValueError, match="output_head"):
        ViSNet(output_head="charges")


def test_more_than_32_neighbours_are_all_used():
    """PyG truncates at 32 neighbours (order-dependent energies); we never truncate, so a dense
    cluster gives the same energy under any permutation of its atoms."""
    torch.manual_seed(0)
    model = ViSNet(hidden_channels=16, num_layers=2, num_heads=2, num_rbf=8, cutoff=5.0).double().eval()
    gen = torch.Generator().manual_seed(1)
    pos = torch.rand(60, 3, generator=gen, dtype=torch.float64) * 4.0  # every atom has ~59 neighbours
    z = torch.full((60,), 6)
    e = model(z, pos)["energy"]
    perm = torch.randperm(60, generator=gen)
    torch.testing.assert_close(model(z[perm], pos[perm])["energy"], e, rtol=1e-12, atol=1e-10)
