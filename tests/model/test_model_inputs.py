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


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_z": -3}, r"max_z must be in \[2, 1000\], got -3"),
        ({"max_z": 0}, r"max_z must be in \[2, 1000\], got 0"),
        ({"num_rbf": 0}, r"num_rbf must be in \[1, 1024\], got 0"),
        ({"num_heads": 0}, r"num_heads must be in \[1, 1024\], got 0"),
        ({"num_layers": -2}, r"num_layers must be in \[1, 64\], got -2"),
        ({"hidden_channels": 1 << 20}, r"hidden_channels must be in \[2, 4096\]"),
        ({"hidden_channels": 16.0}, "hidden_channels must be an integer, got 16.0"),
        ({"std": float("nan")}, "std must be a finite number, got nan"),
        ({"mean": float("inf")}, "mean must be a finite number, got inf"),
        ({"cutoff": 0.0}, "cutoff must be a positive finite number"),
        ({"derivative": "no"}, "derivative must be true or false, got 'no'"),
        ({"reduce_op": "max"}, "reduce_op must be one of"),
        ({"atomref": [0.0] * 5, "max_z": 10}, r"atomref must have shape \(10,\)"),
        ({"atomref": [float("nan")] * 10, "max_z": 10}, "atomref has non-finite"),
    ],
)
def test_bad_hyperparameters_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ViSNet(**kwargs)


def test_heads_declare_what_the_model_does_with_them():
    energy = ViSNet(hidden_channels=16, num_heads=2, num_layers=1)
    assert energy.predicts_energy and not energy.per_atom_output
    gap = ViSNet(hidden_channels=16, num_heads=2, num_layers=1, output_head="scalar", output_key="gap")
    assert not gap.predicts_energy and not gap.per_atom_output
    vector = ViSNet(hidden_channels=16, num_heads=2, num_layers=1, output_head="vector", output_key="f")
    assert vector.per_atom_output and not vector.predicts_energy
    dipole = ViSNet(hidden_channels=16, num_heads=2, num_layers=1, output_head="dipole", output_key="mu")
    assert not dipole.output_model.takes_prior and dipole.output_model.vector_valued


def test_hparams_are_the_architecture_and_read_only():
    model = ViSNet(hidden_channels=16, num_heads=2, num_layers=1, mean=2.0, std=3.0)
    assert "mean" not in model.hparams and "std" not in model.hparams and "atomref" not in model.hparams
    model.hparams["cutoff"] = 1.0
    assert model.hparams["cutoff"] == 5.0 and float(model.std) == 3.0
    rebuilt = ViSNet(**model.hparams)
    assert rebuilt.hparams == model.hparams


def test_forward_leaves_the_allocator_alone(monkeypatch):
    """The glibc mmap threshold is a process-wide choice of the entry points, never of a forward."""
    from visnet.model import allocator

    calls = []
    allocator.use_fixed_mmap_threshold.cache_clear()
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: calls.append(name))
    monkeypatch.setattr("visnet.model.representation.EDGE_CHUNK_BYTES", 1.0)  # force sliced edges
    model = ViSNet(hidden_channels=16, num_heads=2, num_layers=1).double().eval()
    z, pos = water()
    assert torch.isfinite(model(z, pos)["forces"]).all() and not calls


@pytest.mark.parametrize("pbc", [["T", "F", "T"], "yes", [1.5, 0.0, 0.0], [2, 0, 0]])
def test_pbc_must_be_booleans(model, pbc):
    z, pos = water()
    with pytest.raises(ValueError, match="pbc must hold booleans"):
        model(z, pos, cell=5.0 * torch.eye(3, dtype=pos.dtype), pbc=pbc)
