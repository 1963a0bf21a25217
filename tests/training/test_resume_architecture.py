"""Resuming ``visnet fit`` with a changed architecture is refused, naming what differs (issue 13.5)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, shared_file  # noqa: E402

from visnet.cli import main as visnet_main
from visnet.training.module import ViSNetModule, architecture_differences

TINY = str(REPO / "configs" / "tiny.yaml")


def _fit(run_dir: Path, *extra: str) -> int:
    data = str(shared_file("rmd17", "rmd17_ethanol_train1000.npz"))
    args = ["--config", TINY, "--data.path", data, "--trainer.default_root_dir", str(run_dir)]
    return visnet_main(["fit", *args, "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "1", *extra])


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


def _evaluate(subcommand: str, run_dir: Path, *extra: str) -> int:
    data = str(shared_file("rmd17", "rmd17_ethanol_train1000.npz"))
    args = ["--config", TINY, "--data.path", data, "--trainer.default_root_dir", str(run_dir)]
    best = str(run_dir / "checkpoints" / "best.ckpt")
    return visnet_main([subcommand, *args, "--trainer.enable_progress_bar", "false", "--ckpt_path", best, *extra])


@pytest.mark.parametrize(
    ("subcommand", "override", "named"),
    [
        ("test", ["--model.hidden_channels", "32"], "hidden_channels 16 → 32"),
        ("test", ["--model.cutoff_type", "cosine"], "cutoff_type 'polynomial' → 'cosine'"),
        ("validate", ["--model.num_layers", "3"], "num_layers 2 → 3"),
        ("predict", ["--model.cutoff", "3.0"], "cutoff 4.0 → 3.0"),
    ],
)
def test_evaluating_a_checkpoint_with_another_architecture_is_refused(one_epoch, subcommand, override, named, capsys):
    """red-team round 3, item 7: Lightning replaces --model.* with the checkpoint's hyperparameters
    when --ckpt_path names a file, so the options were ignored silently; they are refused."""
    code = _evaluate(subcommand, one_epoch, *override)
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot {subcommand}: the checkpoint" in err and named in err and "drop these options" in err


def test_resuming_an_explicit_checkpoint_file_with_another_architecture_is_refused(one_epoch, capsys):
    last = str(one_epoch / "checkpoints" / "last.ckpt")
    code = _fit(one_epoch, "--ckpt_path", last, "--trainer.max_epochs", "2", "--model.hidden_channels", "32")
    err = capsys.readouterr().err
    assert code == 2 and "cannot resume" in err and "hidden_channels 16 → 32" in err


@pytest.mark.parametrize(
    ("override", "named"),
    [
        (["--model.cutoff", "5.0"], "cutoff 4.0 → 5.0"),
        (["--model.hidden_channels", "128"], "hidden_channels 16 → 128"),
        (["--model.cutoff_type", "cosine"], "cutoff_type 'polynomial' → 'cosine'"),
    ],
)
def test_an_explicit_option_equal_to_the_default_is_compared(one_epoch, override, named, capsys):
    """Review of red-team round 3, item 7: an option given with the parser's default value was taken
    for an option not given, and ignored silently."""
    assert _evaluate("test", one_epoch, *override) == 2
    err = capsys.readouterr().err
    assert "cannot test: the checkpoint" in err and named in err
    last = str(one_epoch / "checkpoints" / "last.ckpt")
    assert _fit(one_epoch, "--ckpt_path", last, "--trainer.max_epochs", "2", *override) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and named in err


def test_an_explicit_option_equal_to_the_checkpoints_is_accepted(one_epoch, capsys):
    assert _evaluate("test", one_epoch, "--model.cutoff", "4.0", "--model.hidden_channels", "16") == 0
    assert "test_loss_forces" in capsys.readouterr().out


def test_evaluating_with_the_saved_config_of_the_run_is_accepted(one_epoch, capsys):
    """The config.yaml Lightning saves names every model option (output_head: null included)."""
    saved = one_epoch / "logs" / "version_0" / "config.yaml"  # the fit's (later runs add versions)
    best = str(one_epoch / "checkpoints" / "best.ckpt")
    args = ["--config", str(saved), "--trainer.enable_progress_bar", "false", "--ckpt_path", best]
    assert visnet_main(["test", *args]) == 0
    assert "test_loss_forces" in capsys.readouterr().out


def test_evaluating_with_the_runs_own_config_is_accepted(one_epoch, capsys):
    assert _evaluate("test", one_epoch) == 0
    assert "test_loss_forces" in capsys.readouterr().out


def test_resuming_on_other_data_of_the_same_size_is_refused(one_epoch, capsys):
    """red-team round 3, item 6: rMD17 aspirin and ethanol both hold 1000 frames; the stored split
    indices would silently pick aspirin frames. The data's fingerprint in splits.npz catches it."""
    aspirin = str(shared_file("rmd17", "rmd17_aspirin_train1000.npz"))
    code = _fit(one_epoch, "--ckpt_path", "last", "--trainer.max_epochs", "2", "--data.path", aspirin)
    err = capsys.readouterr().err
    assert code == 2
    assert "was made for other data" in err and "rmd17_ethanol_train1000.npz" in err and "rmd17_aspirin" in err
    assert "another folder" in err and "--init" in err
