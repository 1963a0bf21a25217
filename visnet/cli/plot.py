"""``visnet plot runs/<name> [...]``: learning curves of run folders, finished or still running.

Writes ``<run>/learning_curves.png`` (loss and validation MAEs against epoch and wall-clock time);
for an ensemble folder (``visnet fit --ensemble N``) one per ``member_k``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from visnet.inference.committee import MEMBER_PREFIX
from visnet.training.plots import plot_run

__all__ = ["main", "run_folders"]


def run_folders(folder: Path) -> list[Path]:
    """``folder`` itself, or its ``member_k`` folders when it is an ensemble run without logs of its own."""
    members = sorted(p for p in folder.glob(f"{MEMBER_PREFIX}*") if p.is_dir())
    return members if members and not (folder / "logs").is_dir() else [folder]


def main(argv: list[str] | None = None) -> int:
    """Run ``visnet plot``; returns 0, or 2 when a folder is missing or has no logged epoch."""
    parser = argparse.ArgumentParser(prog="visnet plot", description="Learning curves of visnet fit runs.")
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (trainer.default_root_dir)")
    args = parser.parse_args(argv)
    code = 0
    for folder in args.runs:
        if not folder.is_dir():
            print(f"visnet plot: error: {folder} is not a folder", file=sys.stderr)
            code = 2
            continue
        for run in run_folders(folder):
            path = plot_run(run)
            if path is None:
                print(f"visnet plot: error: {run} has no logs/version_k/metrics.csv with an epoch yet", file=sys.stderr)
                code = 2
            else:
                print(f"learning curves: {path.resolve()}")
    return code


if __name__ == "__main__":
    sys.exit(main())
