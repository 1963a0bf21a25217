"""Compiled training (issue 21 item 3): optimizer steps of ``visnet fit`` in the same wall-clock
budget, eager against ``--model.compile true`` (compile time included), at ``configs/rmd17_ethanol_cpu.yaml``.

Each run is a real ``visnet fit`` of the config with ``--trainer.max_time`` set to the budget, in its
own run folder and process, one after the other; the steps are the ``global_step`` of the run's last
checkpoint, the force MAE the last validation value of its metrics.csv. Usage::

    OMP_NUM_THREADS=1 python scripts/bench_train_compile.py [--minutes 4] [--output BENCHMARKS.md | --no-write]

The table replaces the bench_train_compile section of BENCHMARKS.md (``benchlib.write_section``).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from benchlib import REPO, add_output_arguments, command_line, machine, write_section

CONFIG = REPO / "configs" / "rmd17_ethanol_cpu.yaml"
DATA = REPO.parent / "shared" / "data" / "rmd17" / "rmd17_ethanol_train1000.npz"


def fit(run_dir: Path, minutes: float, compile: bool) -> dict:
    """One ``visnet fit`` of the config for ``minutes``: optimizer steps, last validation force MAE."""
    seconds = int(minutes * 60)
    budget = f"00:00:{seconds // 60:02d}:{seconds % 60:02d}"
    command = [sys.executable, "-m", "visnet.cli", "fit", "--config", str(CONFIG), "--data.path", str(DATA)]
    command += ["--trainer.default_root_dir", str(run_dir), "--trainer.max_time", budget]
    command += ["--trainer.enable_progress_bar", "false", "--model.compile", str(compile).lower()]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:200], "wall_s": wall}
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    rows = list(csv.DictReader(open(next(run_dir.glob("logs/version_*/metrics.csv")))))
    maes = [float(r["val_forces_mae"]) for r in rows if r.get("val_forces_mae")]
    return {"steps": int(last["global_step"]), "force_mae": maes[-1] if maes else float("nan"), "wall_s": wall}


def main(argv: list[str] | None = None) -> None:
    """Run eager then compiled, write the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=4.0, help="wall-clock budget of each run")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for compile in (False, True):
            label = "compiled (`--model.compile true`)" if compile else "eager"
            results[label] = fit(Path(tmp) / label.split()[0], args.minutes, compile)
            print(label, results[label], flush=True)
    lines = [
        "## Compiled training: optimizer steps in the same wall-clock budget (issue 21)",
        "",
        f"`{command_line(__file__, argv)}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {machine()}. "
        f"`visnet fit --config configs/rmd17_ethanol_cpu.yaml --trainer.max_time` {args.minutes:g} min per run "
        "(validation and the compile included), eager then compiled, one process each.",
        "",
        "| training step | optimizer steps | val force MAE (last) | wall s |",
        "|---|---:|---:|---:|",
    ]
    for label, result in results.items():
        if "error" in result:
            lines.append(f"| {label} | {result['error']} | | {result['wall_s']:.0f} |")
        else:
            lines.append(f"| {label} | {result['steps']} | {result['force_mae']:.3f} | {result['wall_s']:.0f} |")
    eager, compiled = results.values()
    if "steps" in eager and "steps" in compiled and eager["steps"]:
        lines += ["", f"Compiled / eager optimizer steps: {compiled['steps'] / eager['steps']:.2f}×."]
    write_section(__file__, "\n".join(lines), args)


if __name__ == "__main__":
    main()
