"""The ``visnet`` command: every subcommand's help, one error boundary (bad input: one line, exit
code 2; a bug: its traceback), ``python -m visnet.cli`` and the console script, parsing only in cli/."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from visnet.cli import main as visnet_main
from visnet.cli.main import USAGE

COMMANDS = (
    "fit",
    "validate",
    "test",
    "predict",
    "evaluate",
    "md",
    "export",
    "cache",
    "plot",
    "lammps",
    "label",
    "explain",
    "learn",
)

# command -> options its --help must name
HELP_NAMES = {
    "fit": ("--config", "--trainer.max_epochs", "--ensemble"),
    "validate": ("--config", "--ckpt_path"),
    "test": ("--config", "--ckpt_path"),
    "predict": ("--smiles", "--input", "--model", "--output", "--errors", "--config"),
    "evaluate": ("--model", "--data", "--split", "--out", "--max-structures"),
    "md": ("--ensemble", "--temperature", "--steps", "--model", "--check-nve", "--output-dir", "--accel"),
    "export": ("model", "output", "--dtype", "--device"),
    "cache": ("list", "build", "clear"),
    "plot": ("runs",),
    "lammps": ("input", "--model", "--elements", "--mode", "--accel"),
    "label": ("input", "output", "--method", "--calculator", "--workers", "--charge"),
    "explain": ("structure", "--model", "--property", "--method", "--output-dir", "--max-frames"),
    "learn": ("structure", "--model", "--committee", "--rounds", "--max-force-std", "--calculator", "--out"),
}


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    """``visnet <argv>`` in-process: (exit code, stdout, stderr); argparse's exit is an exit code."""
    try:
        code = visnet_main(argv)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_visnet_help_lists_every_command(capsys) -> None:
    code, out, _ = _run(capsys, ["--help"])
    assert code == 0 and out.strip() == USAGE
    listed = [line.split()[0] for line in USAGE.splitlines() if line.startswith("  ") and not line[2].isspace()]
    assert listed == list(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_help_names_its_options(capsys, command: str) -> None:
    code, out, err = _run(capsys, [command, "--help"])
    assert code == 0, err
    assert f"visnet {command}" in out or f"visnet [options] {command}" in out
    missing = [name for name in HELP_NAMES[command] if name not in out]
    assert not missing, f"visnet {command} --help does not name {missing}"


def test_an_unknown_command_is_refused_with_the_usage(capsys) -> None:
    code, _, err = _run(capsys, ["simulate"])
    assert code == 2 and "unknown command 'simulate'" in err and "commands:" in err


def _user_errors(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """command -> (arguments with a mistake caught before any heavy work, part of its message)."""
    return {
        "fit": (["fit", "--ensemble", "0"], "at least 1"),
        "validate": (["validate", "--ensemble", "2"], "`visnet fit` only"),
        "test": (["test", "--ensemble", "2"], "`visnet fit` only"),
        "predict": (["predict", "CCO", "--output", str(tmp / "results.txt")], "use a .csv or .json file name"),
        "evaluate": (
            ["evaluate", "--model", "default", "--data", str(tmp / "missing.npz"), "--out", str(tmp / "e")],
            "missing.npz",
        ),
        "md": (["md", "ethanol", "--max-drift", "0.1", "--output-dir", str(tmp / "md")], "--max-drift needs"),
        "export": (["export", str(tmp / "nope.pt"), str(tmp / "x.pt2")], "nope.pt"),
        "cache": (["cache", "build", str(tmp / "nope.pt")], "nope.pt"),
        "plot": (["plot", str(tmp / "missing_run")], "is not a folder"),
        "lammps": (["lammps", str(tmp / "missing.lmp")], "missing.lmp"),
        "label": (["label", str(tmp / "missing.xyz"), str(tmp / "out.extxyz")], "missing.xyz does not exist"),
        "explain": (["explain", str(tmp / "missing.xyz"), "--output-dir", str(tmp / "x")], "missing.xyz"),
        "learn": (["learn", "ethanol", "--rounds", "0", "--out", str(tmp / "learn")], "rounds must be"),
    }


@pytest.mark.parametrize("command", COMMANDS)
def test_a_user_error_of_every_subcommand_is_one_line(tmp_path: Path, capsys, command: str) -> None:
    """Real bad input (not a patched subcommand): ``visnet: error: <one line>``, exit code 2."""
    argv, message = _user_errors(tmp_path)[command]
    code, _, err = _run(capsys, argv)
    assert code == 2, err
    assert err.startswith("visnet: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_plot_draws_what_it_can_then_names_every_bad_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, ["plot", str(tmp_path / "missing"), str(tmp_path / "empty")])
    assert code == 2 and err.count("\n") == 1
    assert "missing is not a folder" in err and "empty has no logs" in err


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_python_m_visnet_cli_runs_the_command() -> None:
    result = _python("-m", "visnet.cli", "--help")
    assert result.returncode == 0, result.stderr
    assert all(command in result.stdout for command in COMMANDS)
    result = _python("-m", "visnet.cli", "plot", "no_such_run_folder")
    assert result.returncode == 2 and result.stderr == "visnet: error: no_such_run_folder is not a folder\n"


def test_a_bug_in_a_subcommand_keeps_its_traceback() -> None:
    code = (
        "import sys, visnet.cli, visnet.cli.plot\n"
        "def bug(argv): return 1 // 0\n"
        "visnet.cli.plot.main = bug\n"
        "sys.exit(visnet.cli.main(['plot', 'run']))\n"
    )
    result = _python("-c", code)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ZeroDivisionError" in result.stderr
    assert "visnet: error" not in result.stderr


def test_the_console_script_is_the_one_boundary() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()  # no tomllib on Python 3.10
    scripts = pyproject.split("[project.scripts]\n", 1)[1].split("\n\n", 1)[0]
    assert scripts.strip() == 'visnet = "visnet.cli:main"'


def test_commands_without_training_do_not_import_lightning() -> None:
    code = (
        "import sys, visnet.cli.evaluate, visnet.cli.md, visnet.cli.predict, visnet.cli.export, visnet.cli.plot\n"
        "assert 'lightning' not in sys.modules, sorted(m for m in sys.modules if 'lightning' in m)[:5]\n"
    )
    result = _python("-c", code)
    assert result.returncode == 0, result.stderr


def _imports_argparse(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(alias.name == "argparse" for alias in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "argparse":
            return True
    return False


def test_argument_parsing_lives_in_cli_only() -> None:
    """Workflows take plain arguments or a config dataclass; only ``visnet/cli`` parses options."""
    package = REPO / "visnet"
    outside = [p for p in package.rglob("*.py") if (package / "cli") not in p.parents and _imports_argparse(p)]
    assert not outside, [str(p.relative_to(REPO)) for p in outside]
