"""Learning curves (`visnet fit` writes a PNG, `visnet plot` redraws it for any run folder) and
`visnet fit --ensemble N` (seeded members in member_k/, a folder usable as a committee)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import read
from conftest import REPO, shared_file

import visnet
from visnet.cli import main as visnet_main
from visnet.cli.fit import lightning_main
from visnet.dynamics import MDConfig, max_force_std, run_md
from visnet.inference.committee import committee_members, expand_committee
from visnet.training.curves import read_learning_curves
from visnet.training.ensemble import pop_ensemble_size

TINY = str(REPO / "configs" / "tiny.yaml")


def _fit(run_dir: Path, *extra: str) -> int:
    data = str(shared_file("rmd17", "rmd17_ethanol_train1000.npz"))
    args = ["--config", TINY, "--data.path", data, "--trainer.default_root_dir", str(run_dir)]
    return lightning_main(["fit", *args, "--trainer.enable_progress_bar", "false", *extra])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("curves") / "tiny"
    assert _fit(run_dir) == 0
    return run_dir


def test_fit_writes_learning_curves_with_wall_clock(tiny_run):
    png = tiny_run / "learning_curves.png"
    assert png.is_file() and png.stat().st_size > 10_000
    curves = read_learning_curves(tiny_run)
    np.testing.assert_array_equal(curves.epoch, [1, 2])
    assert set(curves.series) == {"train loss", "val loss", "val energy MAE", "val forces MAE"}
    assert all(np.isfinite(v).all() and (v > 0).all() for v in curves.series.values())
    assert curves.time is not None and 0 < curves.time[0] < curves.time[1]  # seconds since training started


def test_visnet_plot_redraws_a_run_folder(tiny_run, tmp_path, capsys):
    copy = shutil.copytree(tiny_run / "logs", tmp_path / "unfinished" / "logs")  # logs only: not finished
    assert visnet_main(["plot", str(copy.parent)]) == 0
    out = capsys.readouterr().out
    assert str((copy.parent / "learning_curves.png").resolve()) in out
    assert (copy.parent / "learning_curves.png").stat().st_size > 10_000
    assert visnet_main(["plot", str(tmp_path / "missing")]) == 2
    (tmp_path / "empty").mkdir()
    assert visnet_main(["plot", str(tmp_path / "empty")]) == 2
    assert "no logs" in capsys.readouterr().err


def test_ensemble_option_parsing():
    assert pop_ensemble_size(["fit", "--config", "c.yaml"]) == (None, ["fit", "--config", "c.yaml"])
    assert pop_ensemble_size(["fit", "--ensemble", "3", "-c", "x"]) == (3, ["fit", "-c", "x"])
    assert pop_ensemble_size(["fit", "--ensemble=2"]) == (2, ["fit"])
    for bad, match in [
        (["fit", "--ensemble", "0"], "at least 1"),
        (["fit", "--ensemble", "two"], "whole number"),
        (["fit", "--ensemble"], "needs a number"),
        (["test", "--ensemble", "2"], "`visnet fit` only"),
    ]:
        with pytest.raises(ValueError, match=match):
            pop_ensemble_size(bad)
    assert visnet_main(["validate", "--ensemble", "2"]) == 2


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory) -> Path:
    """`visnet fit --ensemble 2` of the tiny config (2 epochs each on 32 ethanol frames)."""
    run_dir = tmp_path_factory.mktemp("ensemble") / "ens"
    assert _fit(run_dir, "--ensemble", "2") == 0
    return run_dir


def test_fit_ensemble_trains_seeded_members_usable_as_a_committee(ensemble_run):
    run_dir = ensemble_run
    paths = committee_members(run_dir)
    assert paths == [run_dir / "member_0" / "model.pt", run_dir / "member_1" / "model.pt"]
    for path in paths:
        (path.parent / "learning_curves.png").unlink()  # written by each member's fit
    assert visnet_main(["plot", str(run_dir)]) == 0  # redrawn: one PNG per member
    assert all((p.parent / "learning_curves.png").is_file() for p in paths)
    splits = [np.load(p.parent / "splits.npz")["idx_train"] for p in paths]
    np.testing.assert_array_equal(*splits)  # same data split, different seeds
    first, second = (visnet.load_model(p).state_dict() for p in paths)
    assert any(not torch.equal(first[k], second[k]) for k in first)
    assert expand_committee([run_dir, "default"]) == [*paths, "default"]
    calc = visnet.ViSNetCalculator(model=str(run_dir))
    assert len(calc.members) == 2 and "forces_std" in calc.implemented_properties


# The threshold sits just above the members' largest disagreement on their training frames: after
# 8 steps that is 0.5-1.2 eV/Å depending on the seed (a fixed 0.5 held for one training order only)
MARGIN = 1.05


def test_ensemble_flags_md_frames_far_from_its_data(ensemble_run, tmp_path):
    """The members disagree by ~4 eV/Å on a training frame compressed to 85 %, more than on any
    training frame: MD from there harvests the frames above that on-data maximum, and exactly them."""
    data = np.load(shared_file("rmd17", "rmd17_ethanol_train1000.npz"))
    train = np.load(ensemble_run / "member_0" / "splits.npz")["idx_train"]
    calc = visnet.ViSNetCalculator(model=str(ensemble_run))
    on_data = []
    for index in train:
        atoms = Atoms(numbers=data["z"], positions=data["R"][index])
        atoms.calc = calc
        atoms.get_forces()
        on_data.append(max_force_std(calc.results["forces_std"]))
    threshold = MARGIN * max(on_data)
    squeezed = Atoms(numbers=data["z"], positions=0.85 * data["R"][train[0]])
    config = MDConfig(
        model=str(ensemble_run),
        ensemble="nve",
        timestep=0.25,
        steps=40,
        log_interval=2,
        max_force_std=threshold,
        output_dir=tmp_path,
        name="squeezed",
        progress=False,
        plots=False,
        max_force=1e4,
        max_temperature=1e6,
        min_distance=0.1,
    )
    result = run_md(config, atoms=squeezed)
    assert result.completed, result.message
    time, values = result.force_std
    expected = [2 * k for k, value in enumerate(values) if value > threshold]
    assert expected[0] == 0 and result.uncertain_steps == expected  # the squeezed start is off the data
    frames = read(result.paths.uncertain, ":")
    assert [frame.info["step"] for frame in frames] == expected
    assert all(frame.info["max_force_std"] > threshold for frame in frames)


def test_committee_folder_errors(tmp_path):
    (tmp_path / "member_0").mkdir()
    with pytest.raises(ValueError, match="member_0/model.pt"):
        committee_members(tmp_path)
    with pytest.raises(ValueError, match="neither"):
        committee_members(tmp_path / "member_0")
