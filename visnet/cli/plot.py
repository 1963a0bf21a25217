"""``visnet plot runs/<name> [...]``: learning curves of run folders, finished or still running.

Writes ``<run>/learning_curves.png`` (loss and validation MAEs against epoch and wall-clock time);
for an ensemble folder (``visnet fit --ensemble N``) one per ``member_k``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from visnet.errors import VisnetError
from visnet.inference.committee import MEMBER_PREFIX
from visnet.training.plots import plot_run

__all__ = ["main", "run_folders"]


def run_folders(folder: Path) -> list[Path]:
    """``folder`` itself, or its ``member_k`` folders when it is an ensemble run without logs of its own."""
    members = sorted(p for p in folder.glob(f"{MEMBER_PREFIX}*") if p.is_dir())
    return members if members and not (folder / "logs").is_dir() else [folder]


def main(argv: list[str] | None = None) -> int:
    """Run ``visnet plot``; returns 0. Every folder that can be drawn is; then a missing folder or
    one without a logged epoch is a ``VisnetError`` naming them (exit code 2 at ``visnet.cli.main``)."""
    parser = argparse.ArgumentParser(prog="visnet plot", description="Learning curves of visnet fit runs.")
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (trainer.default_root_dir)")
    args = parser.parse_args(argv)
    problems = [problem for folder in args.runs for problem in _plot_folder(folder)]
    if problems:
        raise VisnetError("; ".join(problems))
    return 0


def _plot_folder(folder: Path) -> list[str]:
    """Draw the learning curves of ``folder`` (each member of an ensemble); returns what failed."""
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    problems = []
    for run in run_folders(folder):
        path = plot_run(run)
        if path is None:
            problems.append(f"{run} has no logs/version_k/metrics.csv with an epoch yet")
        else:
            print(f"learning curves: {path.resolve()}")
    return problems
