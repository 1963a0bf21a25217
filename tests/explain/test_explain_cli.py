"""``visnet explain``: files written, one-line errors through the CLI's error boundary."""

from __future__ import annotations

from pathlib import Path

import pytest

from visnet.cli.main import main


def test_explain_writes_its_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ethanol"
    assert main(["explain", "CCO", "--output-dir", str(out), "--no-attention"]) == 0
    printed = capsys.readouterr().out
    assert "energy" in printed and "decomposition" in printed and str(out) in printed
    assert {"per_atom.csv", "depiction.png", "depiction.svg", "page.html", "summary.txt"} <= {
        p.name for p in out.iterdir()
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["explain", "CCO", "--model", "qm9", "--property", "zpve"], "no model predicts property 'zpve'"),
        (["explain", "CS"], "not trained on element(s) S (Z=16)"),
    ],
)
def test_bad_input_is_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--output-dir", str(tmp_path / "out"), "--no-attention"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("visnet: error:") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_output_dir_that_is_a_file_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    assert main(["explain", "CCO", "--output-dir", str(blocker)]) == 2
    assert "output folder (--output-dir)" in capsys.readouterr().err
