"""``visnet.predict``: SMILES / files / Atoms / RDKit input, units, equivariance, batching, bad input,
tables, bundles and the ``visnet predict`` command. Small random float64 models stand in for trained ones."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase import units as ase_units
from ase.io import write
from conftest import randomize_biases

import visnet
from visnet import ViSNet, predict, save_model
from visnet.cli import main as visnet_main
from visnet.cli.main import _has_config
from visnet.io.bundles import read_bundle, write_bundle
from visnet.io.model_files import PRETRAINED_DIR
from visnet.structures.molecules import load_structure, load_structures

Chem = pytest.importorskip("rdkit.Chem")
from rdkit.Chem import AllChem  # noqa: E402

SMALL = dict(hidden_channels=16, num_layers=1, num_rbf=8, num_heads=2, cutoff=4.0, max_z=10)
KCAL_MOL_IN_EV = ase_units.kcal / ase_units.mol  # 0.0433641 eV


def _small(seed: int, **kwargs) -> ViSNet:
    torch.manual_seed(seed)
    return randomize_biases(ViSNet(**SMALL, **kwargs).double(), scale=0.2, seed=seed)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def energy_file(model_dir) -> Path:
    """Energy model trained (pretend) in kcal/mol: predict must report eV and eV/Å."""
    return save_model(_small(0), model_dir / "energy.pt", units={"energy": "kcal/mol", "length": "Å"})


@pytest.fixture(scope="module")
def dipole_file(model_dir) -> Path:
    model = _small(1, output_head="dipole", output_key="mu", derivative=False)
    return save_model(model, model_dir / "dipole.pt", units={"mu": "D", "length": "Å"})


@pytest.fixture(scope="module")
def models(energy_file, dipole_file) -> list[str]:
    return [str(energy_file), str(dipole_file)]


@pytest.fixture(scope="module")
def frames_file(model_dir) -> Path:
    """Three rattled frames of the bundled ethanol in one extended-XYZ file."""
    base = load_structure("ethanol")
    frames = []
    for k in range(3):
        atoms = base.copy()
        atoms.rattle(0.05, seed=k)
        frames.append(atoms)
    path = model_dir / "frames.extxyz"
    write(path, frames)
    return path


def _same(a: visnet.Prediction, b: visnet.Prediction, tol: float = 1e-10) -> None:
    assert a.ok and b.ok and set(a.properties) == set(b.properties)
    np.testing.assert_allclose(a.atoms.positions, b.atoms.positions, atol=1e-12)
    for name in a.properties:
        np.testing.assert_allclose(a[name], b[name], rtol=tol, atol=tol, err_msg=name)


def _model_args(models: list[str]) -> list[str]:
    return [arg for m in models for arg in ("--model", m)]


def _rotation(seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


# --------------------------------------------------------------------------- behaviour


def test_smiles_prediction_is_deterministic_with_the_seed(models):
    first, again = predict("CCO", model=models)[0], predict("CCO", model=models)[0]
    _same(first, again, tol=0.0)
    assert first.num_atoms == 9 and first.formula == "C2H6O" and first.smiles == "CCO"
    assert "seed 0" in first.source and first.index == first.input_index == 0
    other = predict("CCO", model=models, seed=7)[0]
    assert not np.allclose(other.atoms.positions, first.atoms.positions)


def test_documented_units_and_shapes(models):
    result = predict("c1ccccc1O", model=models)[0]
    assert result.units == {"energy": "eV", "forces": "eV/Å", "mu": "D", "mu_vector": "D"}
    assert isinstance(result["energy"], float) and isinstance(result["mu"], float)
    assert result["forces"].shape == (13, 3) and result["mu_vector"].shape == (3,)
    assert result["mu"] == pytest.approx(np.linalg.norm(result["mu_vector"]), rel=1e-12)


def test_energy_and_dipole_unit_conversions_are_exact(energy_file, model_dir):
    """kcal/mol -> eV with ase.units' factor (0.0433641 eV); e·Å -> D with 1 / ase.units.Debye (4.80320 D)."""
    atoms = load_structure("ethanol")
    model = visnet.load_model(energy_file, dtype="float64")
    z, pos = torch.as_tensor(atoms.numbers), torch.as_tensor(atoms.positions)
    raw = model(z, pos)
    result = predict(atoms, model=energy_file)[0]
    assert KCAL_MOL_IN_EV == pytest.approx(0.0433641043, rel=1e-8)
    assert result["energy"] == pytest.approx(float(raw["energy"].detach()) * KCAL_MOL_IN_EV, rel=1e-12)
    expected_forces = raw["forces"].detach().numpy() * KCAL_MOL_IN_EV
    np.testing.assert_allclose(result["forces"], expected_forces, rtol=1e-12, atol=1e-14)

    dipole = _small(2, output_head="dipole", output_key="mu", derivative=False)
    path = save_model(dipole, model_dir / "dipole_eA.pt", units={"mu": "e*Å", "length": "Å"})
    raw_mu = float(dipole(z, pos)["mu"].detach())
    assert predict(atoms, model=path)[0]["mu"] == pytest.approx(raw_mu / ase_units.Debye, rel=1e-12)
    assert 1 / ase_units.Debye == pytest.approx(4.80320, rel=1e-5)


def test_list_equals_item_by_item(models, frames_file):
    mol = AllChem.AddHs(Chem.MolFromSmiles("CC(=O)O"))
    AllChem.EmbedMolecule(mol, randomSeed=3)
    inputs = ["CCO", load_structure("aspirin"), mol, "c1ccccc1", frames_file]
    together = predict(inputs, model=models, batch_size=2)
    single = [r for item in inputs for r in predict(item, model=models)]
    assert len(together) == len(single) == 4 + 3
    assert [r.input_index for r in together] == [0, 1, 2, 3, 4, 4, 4]
    for a, b in zip(together, single):
        _same(a, b)


def test_multi_frame_file_gives_one_result_per_frame(models, frames_file):
    results = predict(frames_file, model=models)
    assert [r.frame for r in results] == [0, 1, 2]
    assert all(str(frames_file) in r.source for r in results)
    energies = [r["energy"] for r in results]
    assert len(set(energies)) == 3
    as_string = predict(str(frames_file), model=models)
    for a, b in zip(results, as_string):
        _same(a, b, tol=0.0)


def test_dipole_rotates_with_the_molecule(models):
    atoms = load_structure("paracetamol")
    rotation = _rotation(0)
    turned = atoms.copy()
    turned.positions = atoms.positions @ rotation.T + np.array([1.0, -2.0, 0.5])
    before, after = predict([atoms, turned], model=models)
    np.testing.assert_allclose(after["mu_vector"], rotation @ before["mu_vector"], atol=1e-10)
    np.testing.assert_allclose(after["forces"], before["forces"] @ rotation.T, atol=1e-10)
    assert after["energy"] == pytest.approx(before["energy"], abs=1e-10)
    assert abs(before["mu"]) > 1e-3


def test_errors_skip_keeps_the_good_items(models, tmp_path):
    missing = tmp_path / "missing.xyz"
    inputs = ["CCO", "C1CC(", "CCCl", missing, "c1ccccc1"]
    results = predict(inputs, model=models, errors="skip")
    assert [r.ok for r in results] == [True, False, False, False, True]
    assert "'C1CC('" in results[1].error and "Cl" in results[2].error and "missing.xyz" in results[3].error
    assert results[1].properties == {} and results[2].atoms is not None
    _same(results[0], predict("CCO", model=models)[0])
    _same(results[4], predict("c1ccccc1", model=models)[0])
    rows = visnet.results_to_table(results)
    assert len({tuple(row) for row in rows}) == 1  # same columns in every row
    assert rows[1]["error"] and rows[1]["energy [eV]"] == ""


def test_properties_selects_models_and_outputs(models):
    result = predict("CCO", model=models, properties=["mu"])[0]
    assert set(result.properties) == {"mu"} and result.units == {"mu": "D"}
    with pytest.raises(ValueError, match="unknown properties \\['homo'\\].*'energy', 'forces', 'mu', 'mu_vector'"):
        predict("CCO", model=models, properties=["homo"])


def test_relax_lowers_the_energy(energy_file):
    start = predict("CCO", model=energy_file)[0]
    relaxed = predict("CCO", model=energy_file, relax=True, relax_fmax=1e-6, relax_steps=5)[0]
    assert relaxed.info["relaxation"]["steps"] == 5 and relaxed.info["relaxation"]["model"] == str(energy_file)
    assert relaxed["energy"] < start["energy"]
    assert not np.allclose(relaxed.atoms.positions, start.atoms.positions)


# --------------------------------------------------------------------------- bad input


def test_far_from_the_origin_predicts_as_at_the_origin(models):
    """Positions are made relative in float64 before the float32 cast: a molecule 10⁵ Å away
    (float32 spacing there ~8e-3 Å) gets the energy, forces and dipole it has at the origin."""
    near = load_structure("ethanol")
    far = near.copy()
    far.positions += np.array([1e5, -2e5, 3e5])
    at_origin, away = predict([near, far], model=models, dtype="float32", batch_size=2)
    atol = 1e-4  # eV/Å (and eV, D): float32 eps 1.2e-7 × O(1) values × network depth
    np.testing.assert_allclose(away["forces"], at_origin["forces"], rtol=0, atol=atol)
    assert away["energy"] == pytest.approx(at_origin["energy"], abs=10 * atol)
    np.testing.assert_allclose(away["mu_vector"], at_origin["mu_vector"], rtol=0, atol=atol)


def test_invalid_smiles_raises_quoting_it(models):
    with pytest.raises(ValueError, match="invalid SMILES 'C1CC\\('"):
        predict("C1CC(", model=models)
    with pytest.raises(ValueError, match="input 1: invalid SMILES 'xyzzy'"):
        predict(["CCO", "xyzzy"], model=models)


def test_unknown_element_is_named(models):
    with pytest.raises(ValueError, match=r"not trained on element\(s\) Cl \(Z=17\)"):
        predict("CCCl", model=models)
    with pytest.raises(ValueError, match=r"Mg \(Z=12\)"):
        predict(Atoms("MgO", positions=[[0, 0, 0], [0, 0, 1.8]]), model=models)


def test_empty_list_gives_empty_result(models):
    assert predict([], model=models) == []


def test_unreadable_or_missing_file_is_named(models, tmp_path):
    broken = tmp_path / "broken.xyz"
    broken.write_text("3\nnot a frame\nC 0 0\n")
    with pytest.raises(ValueError, match="broken.xyz"):
        predict(broken, model=models)
    with pytest.raises(FileNotFoundError, match="nothere.xyz"):
        predict(str(tmp_path / "nothere.xyz"), model=models)


def test_rdkit_molecules_need_hydrogens_and_a_3d_conformer(models):
    bare = Chem.MolFromSmiles("CCO")
    with pytest.raises(ValueError, match="no conformer"):
        predict(bare, model=models)
    heavy = Chem.MolFromSmiles("CCO")
    AllChem.EmbedMolecule(heavy, randomSeed=0)
    with pytest.raises(ValueError, match="implicit hydrogens"):
        predict(heavy, model=models)
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    result = predict(mol, model=models)[0]
    atoms = Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()], positions=mol.GetConformer().GetPositions())
    _same(result, predict(atoms, model=models)[0])
    assert result.smiles == "CCO"


def test_bad_arguments(models):
    with pytest.raises(ValueError, match="errors must be one of"):
        predict("CCO", model=models, errors="ignore")
    with pytest.raises(ValueError, match="both predict 'energy'"):
        predict("CCO", model=[models[0], models[0]])


# --------------------------------------------------------------------------- tables, files, bundles, CLI


def test_csv_and_json_files(models, tmp_path):
    results = predict(["CCO", "O"], model=models)
    csv_path = visnet.write_csv(results, tmp_path / "out" / "results.csv")
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == ["CCO", "O"]
    assert float(rows[0]["energy [eV]"]) == pytest.approx(results[0]["energy"], rel=1e-15)
    assert {"mu [D]", "mu_vector_x [D]", "formula", "source"} <= set(rows[0])
    data = json.loads(visnet.write_json(results, tmp_path / "results.json").read_text())
    assert np.array(data[1]["properties"]["forces"]).shape == (3, 3) and data[1]["units"]["forces"] == "eV/Å"
    assert np.array(data[1]["positions"]).shape == (3, 3) and data[1]["numbers"] == [8, 1, 1]
    assert not list(tmp_path.glob("**/*.tmp"))


def test_bundle_manifest_combines_models(models, tmp_path):
    entries = [
        {"property": "energy", "file": Path(models[0]).name, "unit": "eV", "test_mae": 0.1},
        {"property": "mu", "file": Path(models[1]).name, "unit": "D", "test_mae": 0.2},
    ]
    manifest = write_bundle(Path(models[0]).parent / "bundle.json", "test", entries)
    for a, b in zip(predict(["CCO", "O"], model=manifest), predict(["CCO", "O"], model=models)):
        _same(a, b, tol=0.0)
    entries.append({"property": "gap", "file": "gap.pt"})
    broken = write_bundle(tmp_path / "broken.json", "broken", entries, training_script="scripts/x.py")
    with pytest.raises(FileNotFoundError, match="gap.pt.*scripts/x.py"):
        predict("CCO", model=broken)


def test_bundled_names_tell_bundles_from_model_cards(models, tmp_path, monkeypatch):
    """``<name>.pt`` with its model card ``<name>.json`` is one model; a ``visnet-bundle`` JSON is a bundle."""
    import visnet.io.bundles
    import visnet.io.model_files

    for module in (visnet.io.bundles, visnet.io.model_files):
        monkeypatch.setattr(module, "PRETRAINED_DIR", tmp_path)
    (tmp_path / "card.pt").write_bytes(Path(models[0]).read_bytes())
    (tmp_path / "card.json").write_text(json.dumps({"name": "card", "test_metrics": {}}))
    for k, m in enumerate(models):
        (tmp_path / f"m{k}.pt").write_bytes(Path(m).read_bytes())
    entries = [{"property": "energy", "file": "m0.pt"}, {"property": "mu", "file": "m1.pt"}]
    write_bundle(tmp_path / "pair.json", "pair", entries)
    assert visnet.io.bundles.list_bundles(tmp_path) == ["pair"]
    assert set(predict("O", model="card")[0].properties) == {"energy", "forces"}
    assert set(predict("O", model="pair")[0].properties) == {"energy", "forces", "mu", "mu_vector"}


def test_shipped_qm9_manifest_lists_the_properties():
    manifest = read_bundle(PRETRAINED_DIR / "qm9.json")
    assert {e["property"] for e in manifest["models"]} >= {"U0", "homo", "lumo", "gap", "mu"}
    assert manifest["training_script"] == "scripts/train_qm9_models.py"


def test_stereo_smiles_with_slashes_are_smiles_not_paths():
    assert load_structures("F/C=C/F")[0].get_chemical_formula() == "C2H2F2"
    with pytest.raises(FileNotFoundError, match="missing.xyz"):
        load_structure("missing.xyz")


def test_command_line(models, frames_file, tmp_path, capsys):
    out = tmp_path / "results.csv"
    argv = ["predict", "--smiles", "CCO", "--input", str(frames_file), *_model_args(models), "--output", str(out)]
    assert visnet_main(argv) == 0
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == ["frames"] * 3 + ["CCO"]
    assert visnet_main(["predict", "CCO", *_model_args(models)]) == 0
    assert "energy [eV]" in capsys.readouterr().out
    assert visnet_main(["predict", "--smiles", "C1CC(", *_model_args(models)]) == 2
    assert "invalid SMILES 'C1CC('" in capsys.readouterr().err
    assert _has_config(["--config", "x.yaml"]) and _has_config(["--config=x.yaml"])
    assert not _has_config(["--smiles", "C"])
