"""``visnet cache list | build | clear`` and the ``--accel`` options of ``visnet md`` and ``visnet predict``.

The builds here use a stand-in exporter (a few bytes, no compiler run); the real export is
covered by the slow tests of tests/accel/test_cache.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import small_model

from visnet.accel import build as vbuild
from visnet.accel.cache import FastPathCache
from visnet.cli import main as visnet_main
from visnet.cli.md import build_parser as md_parser
from visnet.cli.md import config_from_args
from visnet.io.model_files import load_model, save_model


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("VISNET_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def fake_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_export(model_file: Path, package: Path, dtype: torch.dtype, device: torch.device) -> None:
        package.write_bytes(repr(load_model(model_file).hparams).encode() * 50)  # reads the job's model file

    monkeypatch.setattr(vbuild, "export_file", fake_export)


def test_build_list_and_clear(tmp_path: Path, fake_builds: None, capsys: pytest.CaptureFixture) -> None:
    model_file = save_model(small_model(), tmp_path / "small.pt")
    assert visnet_main(["cache", "list"]) == 0
    assert "0 package(s)" in capsys.readouterr().out
    assert visnet_main(["cache", "build", str(model_file)]) == 0
    assert "built in" in capsys.readouterr().out
    assert visnet_main(["cache", "build", str(model_file)]) == 0
    assert "already cached" in capsys.readouterr().out
    assert visnet_main(["cache", "build", str(model_file), "--dtype", "float32"]) == 0
    capsys.readouterr()
    assert visnet_main(["cache", "list"]) == 0
    listing = capsys.readouterr().out
    assert "2 package(s)" in listing and "float32" in listing and "float64" in listing and "small.pt" in listing
    assert visnet_main(["cache", "clear"]) == 0
    assert "removed 2 package(s)" in capsys.readouterr().out
    assert FastPathCache().entries() == []


def test_a_failed_build_is_one_line_and_exit_2(tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture) -> None:
    cache_dir.mkdir(parents=True)
    (cache_dir / "packages").write_text("a file where the folder should be")
    model_file = save_model(small_model(), tmp_path / "small.pt")
    assert visnet_main(["cache", "build", str(model_file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("visnet: error: could not build the package") and "not writable" in err[-1]


def test_accel_options_reach_the_run() -> None:
    assert config_from_args(md_parser().parse_args(["aspirin"])).accel == "auto"
    assert config_from_args(md_parser().parse_args(["aspirin", "--accel", "eager"])).accel == "eager"
    with pytest.raises(SystemExit):
        md_parser().parse_args(["aspirin", "--accel", "fastest"])


def test_md_with_compile_and_accel_eager_is_refused_in_one_line(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code = visnet_main(
        ["md", "ethanol", "--compile", "--accel", "eager", "--steps", "1", "--output-dir", str(tmp_path)]
    )
    assert code == 2 and "compile=True contradicts accel='eager'" in capsys.readouterr().err
