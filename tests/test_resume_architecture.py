"""Resuming ``visnet fit`` with a changed architecture is refused, naming what differs (issue 13.5)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, shared_file  # noqa: E402

from visnet.training.cli import lightning_main
from visnet.training.module import ViSNetModule, architecture_differences

TINY = str(REPO / "configs" / "tiny.yaml")


def _fit(run_dir: Path, *extra: str) -> int:
    data = str(shared_file("rmd17", "rmd17_ethanol_train1000.npz"))
    args = ["--config", TINY, "--data.path", data, "--trainer.default_root_dir", str(run_dir)]
    return lightning_main(["fit", *args, "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "1", *extra])


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("arch")
    assert _fit(run_dir) == 0
    return run_dir


@pytest.mark.parametrize(
    ("override", "named"),
    [
        (["--model.lmax", "2"], "lmax 1 → 2"),
        (["--model.cutoff", "3.0"], "cutoff 4.0 → 3.0"),
        (["--model.hidden_channels", "32"], "hidden_channels 16 → 32"),
    ],
)
def test_resume_with_another_architecture_is_refused(one_epoch, override, named, capsys):
    code = _fit(one_epoch, "--ckpt_path", "last", "--trainer.max_epochs", "2", *override)
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot resume" in err and named in err


def test_differences_ignore_statistics_of_old_checkpoints():
    current = ViSNetModule(hidden_channels=16, num_layers=1, num_heads=2, max_z=10).model.hparams
    old = {**current, "mean": 3.0, "std": 2.0}  # files written before the statistics left hparams
    assert architecture_differences(old, current) == []
    assert architecture_differences({**current, "num_layers": 3}, current) == ["num_layers 3 → 1"]


def test_statistics_and_derived_arguments_are_refused():
    with pytest.raises(ValueError, match=r"\['mean'\] are set from the data"):
        ViSNetModule(hidden_channels=16, num_heads=2, mean=1.0)
