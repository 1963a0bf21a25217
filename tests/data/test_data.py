"""Data: readers, exact unit conversions, caching, splits, statistics, collation and bad input."""

from __future__ import annotations

from pathlib import Path

import ase.io
import ase.units
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from conftest import shared_file  # noqa: E402

from visnet.data import (
    QM9_TARGETS,
    AtomsData,
    AtomsDataset,
    ViSNetDataModule,
    canonical_unit,
    collate,
    compute_statistics,
    energy_factor,
    force_factor,
    head_for_target,
    length_factor,
    load_atoms_data,
    load_or_make_splits,
    make_splits,
)

ETHANOL_NPZ = ("rmd17", "rmd17_ethanol_train1000.npz")
ETHANOL_XYZ = ("rmd17", "rmd17_ethanol_train1000.extxyz")


def _md17_copy(tmp_path: Path, frames: int = 12, name: str = "small.npz", **changes) -> Path:
    """The first ``frames`` rMD17 ethanol frames as an sGDML npz, with keys replaced/removed."""
    src = np.load(shared_file(*ETHANOL_NPZ))
    arrays = {"R": src["R"][:frames], "z": src["z"], "E": src["E"][:frames], "F": src["F"][:frames]}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


# ------------------------------------------------------------------------- units
def test_unit_factors_are_ase_constants():
    assert energy_factor("kcal/mol", "eV") == ase.units.kcal / ase.units.mol
    assert energy_factor("Hartree", "eV") == ase.units.Hartree
    assert energy_factor("kJ/mol", "eV") == ase.units.kJ / ase.units.mol
    assert energy_factor("eV", "meV") == 1000.0
    assert length_factor("bohr", "Å") == ase.units.Bohr
    assert force_factor("Hartree", "bohr", "eV", "Å") == ase.units.Hartree / ase.units.Bohr
    x = np.linspace(-1e5, 1e5, 101)
    np.testing.assert_allclose(
        x * energy_factor("kcal/mol", "Hartree") * energy_factor("Hartree", "kcal/mol"), x, rtol=1e-15
    )


def test_unit_aliases_and_unknown_units():
    assert canonical_unit("ev", "energy") == "eV"
    assert canonical_unit("Ha", "energy") == "Hartree"
    assert canonical_unit("Ang", "length") == "Å"
    assert canonical_unit("kcal_mol", "energy") == "kcal/mol"
    with pytest.raises(ValueError, match="unknown energy unit 'furlong'"):
        canonical_unit("furlong", "energy")
    with pytest.raises(ValueError, match="unknown length unit 'eV'"):
        canonical_unit("eV", "length")


def test_extxyz_in_ev_matches_npz_in_kcal_mol_exactly(tmp_path):
    """The shared npz is the extxyz times 1/(kcal/mol): loading the extxyz with output unit
    kcal/mol reproduces it to float64 rounding."""
    npz = load_atoms_data(shared_file(*ETHANOL_NPZ))
    xyz = load_atoms_data(shared_file(*ETHANOL_XYZ), output_energy_unit="kcal/mol", cache_dir=tmp_path)
    assert npz.units == xyz.units == {"energy": "kcal/mol", "length": "Å"}
    np.testing.assert_array_equal(npz.z, xyz.z)
    np.testing.assert_allclose(xyz.y, npz.y, rtol=1e-15, atol=0)
    np.testing.assert_allclose(xyz.forces, npz.forces, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(xyz.pos, npz.pos, atol=1e-12)
    assert len(list(tmp_path.glob("*.npz"))) == 1  # processed once, cached


def test_cache_is_keyed_by_settings(tmp_path):
    path = tmp_path / "frames.extxyz"
    frames = ase.io.read(shared_file(*ETHANOL_XYZ), index=":5")
    ase.io.write(path, frames)
    cache = tmp_path / "cache"
    a = load_atoms_data(path, cache_dir=cache)
    b = load_atoms_data(path, cache_dir=cache)  # cache hit
    np.testing.assert_array_equal(a.y, b.y)
    load_atoms_data(path, cache_dir=cache, index=":3")
    assert len(list(cache.glob("*.npz"))) == 2


def test_bohr_positions_and_forces_are_converted(tmp_path):
    atoms = Atoms("OH2", positions=[[0, 0, 0], [1.8, 0, 0], [0, 1.8, 0]])
    forces = np.arange(9.0).reshape(3, 3)
    atoms.calc = SinglePointCalculator(atoms, energy=-76.0, forces=forces)
    path = tmp_path / "water.extxyz"
    ase.io.write(path, [atoms])
    data = load_atoms_data(path, energy_unit="Hartree", length_unit="bohr", output_energy_unit="eV", cache_dir=tmp_path)
    np.testing.assert_allclose(data.pos[1], [1.8 * ase.units.Bohr, 0, 0], rtol=1e-15)
    assert data.y[0] == pytest.approx(-76.0 * ase.units.Hartree, rel=1e-15)
    np.testing.assert_allclose(data.forces, forces * ase.units.Hartree / ase.units.Bohr, rtol=1e-15)


# ------------------------------------------------------------------- MD17 files
def test_md17_energy_shapes_and_rmd17_layout_agree(tmp_path):
    src = np.load(shared_file(*ETHANOL_NPZ))
    flat = load_atoms_data(_md17_copy(tmp_path, E=src["E"][:12, 0]))
    column = load_atoms_data(_md17_copy(tmp_path, name="column.npz"))
    rmd17 = tmp_path / "rmd17.npz"
    np.savez(rmd17, nuclear_charges=src["z"], coords=src["R"][:12], energies=src["E"][:12, 0], forces=src["F"][:12])
    other = load_atoms_data(rmd17)
    for data in (column, other):
        np.testing.assert_array_equal(data.y, flat.y)
        np.testing.assert_array_equal(data.forces, flat.forces)
        np.testing.assert_array_equal(data.z, flat.z)
    assert flat.y.shape == (12,) and flat.forces.shape == (12 * 9, 3) and flat.units["energy"] == "kcal/mol"


def test_md17_declared_units_and_conflicts(tmp_path):
    path = _md17_copy(tmp_path, e_unit=np.array("eV"), r_unit=np.array("Ang"))
    assert load_atoms_data(path).units == {"energy": "eV", "length": "Å"}
    with pytest.raises(ValueError, match="declares e_unit='eV' but energy_unit='kcal/mol'"):
        load_atoms_data(path, energy_unit="kcal/mol")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"E": None}, r"not an MD17-style npz.*found \['F', 'R', 'z'\]"),
        ({"F": np.zeros((12, 8, 3))}, r"key 'F' has shape \(12, 8, 3\), expected \(12, 9, 3\)"),
        ({"E": np.zeros((11, 1))}, r"key 'E' has shape \(11, 1\), expected \(12,\) or \(12, 1\)"),
        ({"z": np.ones(8, dtype=np.uint8)}, r"key 'z' has shape \(8,\), expected \(9,\)"),
    ],
)
def test_md17_missing_keys_and_mismatched_shapes(tmp_path, changes, message):
    path = _md17_copy(tmp_path, **changes)
    with pytest.raises(ValueError, match=message) as info:
        load_atoms_data(path)
    assert str(path) in str(info.value)


def test_nan_labels_name_file_and_frame(tmp_path):
    src = np.load(shared_file(*ETHANOL_NPZ))
    energies = src["E"][:12].copy()
    energies[7, 0] = np.nan
    path = _md17_copy(tmp_path, E=energies)
    with pytest.raises(ValueError, match=r"small\.npz: frame 7 has non-finite \(NaN/inf\) energy"):
        load_atoms_data(path)
    forces = src["F"][:12].copy()
    forces[5, 3, 1] = np.inf
    path = _md17_copy(tmp_path, name="badf.npz", F=forces)
    with pytest.raises(ValueError, match=r"badf\.npz: frame 5 has non-finite \(NaN/inf\) forces"):
        load_atoms_data(path)


def test_ase_file_without_energy_or_with_partial_forces(tmp_path):
    a = Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])
    path = tmp_path / "noenergy.extxyz"
    ase.io.write(path, [a])
    with pytest.raises(ValueError, match="frame 0 has no energy"):
        load_atoms_data(path, cache_dir=tmp_path)
    b, c = a.copy(), a.copy()
    b.calc = SinglePointCalculator(b, energy=-1.0, forces=np.zeros((2, 3)))
    c.calc = SinglePointCalculator(c, energy=-1.0)
    path = tmp_path / "partial.extxyz"
    ase.io.write(path, [b, c])
    with pytest.raises(ValueError, match=r"frames \[1\] have no forces"):
        load_atoms_data(path, cache_dir=tmp_path)


def test_unknown_format_and_missing_file(tmp_path):
    path = tmp_path / "odd.npz"
    np.savez(path, foo=np.zeros(3))
    with pytest.raises(ValueError, match="unknown npz layout"):
        load_atoms_data(path)
    with pytest.raises(FileNotFoundError):
        load_atoms_data(tmp_path / "nope.npz")


# -------------------------------------------------------------------------- QM9
def test_qm9_energies_in_ev_and_other_targets_unchanged():
    path = shared_file("qm9", "qm9_subset5k.npz")
    raw = np.load(path)
    names = raw["target_names"].tolist()
    u0 = load_atoms_data(path, target="U0")
    np.testing.assert_array_equal(u0.y, raw["targets"][:, names.index("U0")] * ase.units.Hartree)
    assert u0.units["U0"] == "eV" and len(u0) == 5000 and u0.ptr[-1] == len(raw["z"])
    mu = load_atoms_data(path, target="mu")
    np.testing.assert_array_equal(mu.y, raw["targets"][:, names.index("mu")])
    assert mu.units["mu"] == "D"
    assert list(QM9_TARGETS) == names
    assert (head_for_target("mu"), head_for_target("alpha"), head_for_target("r2")) == (
        "dipole",
        "scalar",
        "spatial_extent",
    )
    assert head_for_target("energy") == "energy"


def test_unknown_qm9_target():
    path = shared_file("qm9", "qm9_subset5k.npz")
    with pytest.raises(ValueError, match=r"unknown QM9 target 'U00'; valid targets: \['mu'"):
        load_atoms_data(path, target="U00")
    with pytest.raises(ValueError, match="unknown QM9 target 'energy0'"):
        ViSNetDataModule(str(path), target="energy0")
    with pytest.raises(ValueError, match="target 'U0' needs a QM9 file"):
        load_atoms_data(shared_file(*ETHANOL_NPZ), target="U0")


# ----------------------------------------------------------------------- splits
def test_splits_sizes_fractions_and_seed():
    a = make_splits(100, 50, 0.2, "10%", seed=1)
    assert [len(a[k]) for k in ("train", "val", "test")] == [50, 20, 10]
    assert len(np.intersect1d(a["train"], a["val"])) == 0 and len(np.intersect1d(a["val"], a["test"])) == 0
    b = make_splits(100, 50, 0.2, "10%", seed=1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(make_splits(100, 50, 0.2, None, seed=2)["train"], a["train"])
    assert len(make_splits(100, 50, 20, None)["test"]) == 30  # None = the rest
    assert len(make_splits(100, 1, 1, None)["train"]) == 1  # an int 1 is a count, not 100 %


def test_split_larger_than_data():
    with pytest.raises(ValueError, match=r"split larger than the data: train 950 \+ val 50 \+ test 10 = 1010 > 1000"):
        make_splits(1000, 950, 50, 10, source="x.npz")
    with pytest.raises(ValueError, match="at most one of"):
        make_splits(10, None, None, 2)
    with pytest.raises(ValueError, match="fraction must be in"):
        make_splits(10, 1.5, 1, 1)


def test_splits_file_reused_and_checked(tmp_path):
    first = load_or_make_splits(tmp_path, 100, 60, 20, None, seed=0)
    assert (tmp_path / "splits.npz").is_file()
    again = load_or_make_splits(tmp_path, 100, 60, 20, None, seed=0)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    with pytest.raises(ValueError, match=r"made for other settings \(num_train: stored 60 vs now 50"):
        load_or_make_splits(tmp_path, 100, 50, 20, None, seed=0)
    with pytest.warns(UserWarning, match="making new splits"):
        new = load_or_make_splits(tmp_path, 100, 50, 20, None, seed=0, replace_mismatched=True)
    assert len(new["train"]) == 50
    assert len(load_or_make_splits(tmp_path, 100, 50, 20, None, seed=0)["train"]) == 50


# ------------------------------------------------------------------- statistics
def _synthetic(refs: dict[int, float], compositions: list[list[int]], noise: float = 0.0) -> AtomsData:
    z = np.concatenate([np.array(c) for c in compositions])
    ptr = np.concatenate([[0], np.cumsum([len(c) for c in compositions])])
    rng = np.random.default_rng(0)
    y = np.array([sum(refs[a] for a in c) for c in compositions]) + noise * rng.standard_normal(len(compositions))
    return AtomsData(
        z=z, pos=rng.standard_normal((len(z), 3)), ptr=ptr, y=y, forces=rng.standard_normal((len(z), 3)) * 2.0
    )


def test_least_squares_atomrefs_recover_exact_references():
    refs = {1: -13.6, 6: -1029.8, 8: -2042.6}
    comps = [[6, 1, 1, 1, 1], [8, 1, 1], [6, 8], [6, 6, 1, 1, 1, 1, 8], [1, 1], [6, 8, 8]]
    stats = compute_statistics(_synthetic(refs, comps), max_z=10, extensive=True, use_forces=False)
    np.testing.assert_allclose(stats.atomref[[1, 6, 8]], [refs[1], refs[6], refs[8]], rtol=1e-10)
    assert stats.mean == 0.0 and stats.std == 1.0  # zero residual -> no scaling
    with_forces = compute_statistics(_synthetic(refs, comps, noise=0.1), 10, extensive=True, use_forces=True)
    data = _synthetic(refs, comps, noise=0.1)
    assert with_forces.std == pytest.approx(np.sqrt(np.mean(data.forces**2)))


def test_statistics_use_the_training_split_only(tmp_path):
    path = _md17_copy(tmp_path, frames=30)
    dm = ViSNetDataModule(str(path), num_train=20, num_val=5, num_test=5, run_dir=str(tmp_path / "run"))
    dm.setup("fit")
    stats = dm.statistics(max_z=10, use_forces=True)
    src = np.load(path)
    train = dm.split_indices["train"]
    assert stats.std == pytest.approx(np.sqrt(np.mean(src["F"][train] ** 2)), rel=1e-12)
    counts = np.bincount(src["z"], minlength=10)
    assert counts @ stats.atomref == pytest.approx(src["E"][train, 0].mean(), rel=1e-12)
    # changing labels outside the training split leaves the statistics alone
    energies, forces = src["E"].copy(), src["F"].copy()
    others = np.setdiff1d(np.arange(30), train)
    energies[others] += 1000.0
    forces[others] *= 10.0
    path2 = _md17_copy(tmp_path, frames=30, name="changed.npz", E=energies, F=forces)
    dm2 = ViSNetDataModule(str(path2), num_train=20, num_val=5, num_test=5, run_dir=str(tmp_path / "run2"))
    stats2 = dm2.statistics(max_z=10, use_forces=True)
    np.testing.assert_allclose(stats2.atomref, stats.atomref, rtol=1e-12)
    assert stats2.std == pytest.approx(stats.std, rel=1e-12)


def test_given_atom_energies_replace_the_fit(tmp_path):
    dm = ViSNetDataModule(
        str(_md17_copy(tmp_path)),
        num_train=8,
        num_val=2,
        run_dir=str(tmp_path),
        atom_energies={"H": -313.5, "C": -23624.0, "8": -47047.0},
    )
    stats = dm.statistics(max_z=10, use_forces=True)
    assert stats.atomref[[1, 6, 8]].tolist() == [-313.5, -23624.0, -47047.0] and stats.mean == 0.0
    bad = ViSNetDataModule(
        str(_md17_copy(tmp_path)), num_train=8, num_val=2, run_dir=str(tmp_path), atom_energies={"Xx": 1.0}
    )
    with pytest.raises(ValueError, match="unknown element 'Xx'"):
        bad.statistics(max_z=10, use_forces=True)


def test_qm9_npz_from_pyg_round_trip(tmp_path):
    """A PyG-style QM9 dataset (eV energies) written by ``qm9_npz_from_pyg`` reads back unchanged."""
    from types import SimpleNamespace

    from visnet.data.qm9 import qm9_npz_from_pyg

    path = shared_file("qm9", "qm9_subset5k.npz")
    raw = np.load(path)
    ev = np.array([ase.units.Hartree if u == "Hartree" else 1.0 for u in raw["target_units"]])
    molecules = [
        SimpleNamespace(
            z=torch.as_tensor(raw["z"][lo:hi]),
            pos=torch.as_tensor(raw["pos"][lo:hi]),
            y=torch.as_tensor(raw["targets"][i] * ev).reshape(1, -1),
        )
        for i, (lo, hi) in enumerate(zip(raw["ptr"][:20], raw["ptr"][1:21]))
    ]
    out = qm9_npz_from_pyg(molecules, tmp_path / "qm9_from_pyg.npz")
    for target in ("U0", "mu", "gap"):
        a, b = load_atoms_data(out, target=target), load_atoms_data(path, target=target)
        np.testing.assert_allclose(a.y, b.y[:20], rtol=1e-14)
        np.testing.assert_array_equal(a.z, b.z[: a.ptr[-1]])


def test_datamodule_split_larger_than_data_fails_before_training(tmp_path):
    dm = ViSNetDataModule(str(_md17_copy(tmp_path)), num_train=10, num_val=5, num_test=None, run_dir=str(tmp_path))
    with pytest.raises(ValueError, match="split larger than the data: train 10 \\+ val 5 = 15 > 12 structures"):
        dm.setup("fit")


# ---------------------------------------------------------------- collation
def test_collate_concatenates_and_builds_batch_vector(tmp_path):
    data = load_atoms_data(_md17_copy(tmp_path))
    ds = AtomsDataset(data, np.array([3, 0, 5]))
    batch = collate([ds[i] for i in range(3)])
    assert batch["z"].shape == (27,) and batch["z"].dtype == torch.long
    assert batch["pos"].shape == (27, 3) and batch["pos"].dtype == torch.float32
    assert batch["forces"].shape == (27, 3)
    assert batch["batch"].tolist() == [0] * 9 + [1] * 9 + [2] * 9
    assert batch["y"].dtype == torch.float64 and batch["index"].tolist() == [3, 0, 5]
    np.testing.assert_array_equal(batch["y"].numpy(), data.y[[3, 0, 5]])
    np.testing.assert_allclose(batch["pos"][9:18].numpy(), data.pos[0:9], rtol=1e-6)


@pytest.mark.parametrize("value", ["T", '"12.5 eV"', "1,2,3"])
def test_extxyz_energy_that_is_not_a_number_is_refused(tmp_path, value):
    """``energy=T`` reads as True (was 1.0 eV), a string or a vector is no energy: named, refused."""
    path = tmp_path / "bad.extxyz"
    path.write_text(f'2\nenergy={value} pbc="F F F"\nC 0 0 0\nO 1.13 0 0\n')
    with pytest.raises(ValueError, match=r"frame 0 has a non-numeric energy"):
        load_atoms_data(path, cache_dir=tmp_path / "cache")


def test_evaluate_refuses_a_non_positive_max_structures(tmp_path, capsys):
    """``--max-structures -3`` used to evaluate all but the last three structures."""
    from visnet.cli import main as visnet_main

    data = str(shared_file(*ETHANOL_NPZ))
    args = ["--model", "default", "--data", data, "--max-structures", "-3", "--out", str(tmp_path / "out")]
    assert visnet_main(["evaluate", *args]) == 2
    assert "--max-structures must be >= 1, got -3" in capsys.readouterr().err


def test_cache_is_keyed_on_content_not_size_and_mtime(tmp_path):
    """An edit that keeps the file's size and mtime still invalidates the cached entry."""
    import os

    path = _md17_copy(tmp_path, frames=4)
    first = load_atoms_data(path, cache_dir=tmp_path / "cache")
    stat = path.stat()
    arrays = dict(np.load(path))
    arrays["E"] = arrays["E"] + 1.0  # same dtype and shape: same file size
    np.savez(path, **arrays)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    second = load_atoms_data(path, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(second.y, first.y + 1.0)  # exact: float64 + 1.0 as written
