"""Bad input to ``visnet learn``: one-line errors before any MD, label or fit."""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from conftest import randomize_biases

import visnet
from visnet.cli.main import main as cli_main
from visnet.learning import learn

TINY_ARCH = dict(hidden_channels=16, num_layers=2, num_rbf=8, num_heads=2, lmax=1, cutoff=4.0, max_z=10)


def _never(argv: list[str]) -> int:
    raise AssertionError(f"no fit may run: {argv}")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    torch.manual_seed(0)
    net = randomize_biases(visnet.ViSNet(**TINY_ARCH), scale=0.2, seed=0)
    path = tmp_path_factory.mktemp("bad") / "start.pt"
    return str(visnet.save_model(net, path, units={"energy": "eV", "length": "Å"}, elements=[1, 6, 8]))


def _learn(tmp_path: Path, model: str, structure: str = "ethanol", **options):
    settings = dict(model=model, calculator="ase.calculators.emt:EMT", out=str(tmp_path / "run"), progress=False)
    return learn(structure, fit_runner=_never, **{**settings, **options})


@pytest.mark.parametrize("rounds", [0, -1])
def test_rounds_below_one(tmp_path, model, rounds):
    with pytest.raises(ValueError, match="rounds must be a whole number >= 1"):
        _learn(tmp_path, model, rounds=rounds)


def test_unreadable_structure(tmp_path, model):
    bad = tmp_path / "broken.xyz"
    bad.write_text("3\nnot a frame\nX 0 0\n")
    with pytest.raises(ValueError, match="broken.xyz"):
        _learn(tmp_path, model, structure=str(bad))


def test_element_the_start_model_lacks(tmp_path, model):
    with pytest.raises(ValueError, match=r"holds S, which the start model .* was not trained on"):
        _learn(tmp_path, model, structure="CS")


def test_calculator_that_does_not_import(tmp_path, model):
    with pytest.raises(ValueError, match="no_such_module"):
        _learn(tmp_path, model, calculator="no_such_module:factory")


def test_committee_of_one(tmp_path, model):
    with pytest.raises(ValueError, match="committee must be a whole number >= 2"):
        _learn(tmp_path, model, committee=1)


def test_test_file_without_labels(tmp_path, model):
    bare = tmp_path / "bare.xyz"
    bare.write_text("1\n\nH 0 0 0\n")
    with pytest.raises(ValueError, match="no reference energy and forces"):
        _learn(tmp_path, model, test=str(bare))


def test_test_file_with_a_nan_force(tmp_path, model):
    """A NaN reference would make every round's test error NaN: refused before any work."""
    from ase.build import molecule
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = [molecule("CH3CH2OH") for _ in range(2)]
    for atoms in frames:
        atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.zeros((len(atoms), 3)))
    frames[1].calc.results["forces"][3, 1] = np.nan
    reference = tmp_path / "nan.extxyz"
    ase.io.write(reference, frames, format="extxyz")
    with pytest.raises(ValueError, match="nan.extxyz, frame 1: the reference energy or forces are not finite"):
        _learn(tmp_path, model, test=str(reference))
    assert not (tmp_path / "run").exists()


def test_cli_reports_one_line_and_exit_2(tmp_path, model, capsys):
    code = cli_main(["learn", "ethanol", "--model", model, "--rounds", "0", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("visnet: error: rounds must be") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "text, key",
    [
        ("checkpoint:\n  dirpath: runs/checkpoints\n", "checkpoint.dirpath"),
        ("checkpoint.dirpath: runs/checkpoints\n", "checkpoint.dirpath"),
        ("trainer:\n  max_epochs: 5\nckpt_path: start.ckpt\n", "ckpt_path"),
    ],
)
def test_train_config_setting_an_option_of_every_member(tmp_path, model, text, key):
    """One checkpoint folder (or one checkpoint to start from) for every committee member: refused
    before any work, naming the file and the key."""
    config = tmp_path / "train.yaml"
    config.write_text(text)
    with pytest.raises(ValueError, match=rf"--train-config {config} sets {key}: every committee member"):
        _learn(tmp_path, model, train_config=str(config))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text, message", [("- fit\n", "is not a mapping"), ("trainer: [\n", "is not valid YAML")])
def test_train_config_that_is_not_a_mapping(tmp_path, model, text, message):
    config = tmp_path / "train.yaml"
    config.write_text(text)
    with pytest.raises(ValueError, match=rf"--train-config {config} {message}"):
        _learn(tmp_path, model, train_config=str(config))
