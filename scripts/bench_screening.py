"""Screening at scale (issue 24 item 3): ``visnet predict FILE --output results.csv`` over QM9
molecules, 1 vs 2 processes (Lightning DDP on CPU, one thread each), and resident memory over a
run of 10,000 and of 1,000,000 structures (the pipeline's memory must not grow with the collection).

    OMP_NUM_THREADS=1 flock /tmp/heavy.lock python scripts/bench_screening.py
    OMP_NUM_THREADS=1 python scripts/bench_screening.py --part throughput    # then --part memory
    python scripts/bench_screening.py --structures 2000 --memory-structures 20000 --no-write   # a quick trial

``--conditions TEXT`` records what else ran on the machine (the throughput part wants the other jobs
paused; memory does not) and puts it into the section.

The inputs are written to a scratch folder (``--scratch``, default /tmp) as extended XYZ, streamed
from QM9 (molecules of H, C, N and O only, cycled), never held in memory. Throughput: the bundled
``default`` model (energy and forces, float64), wall time of the whole command (start-up included)
and the steady rate from the shards' completion times (each rank's first shard excluded). Memory:
the same command with a tiny model (1 layer, 16 channels), so the run is dominated by reading,
batching and writing: resident memory sampled every half second against the structures done.
There is no floor for this benchmark: the goal is a ratio (2 processes ≥ 1.8× one) and a flat line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from benchlib import REPO, add_conditions_argument, add_output_arguments, command_line, machine, rss_gb, write_section

QM9 = REPO.parent / "shared" / "data" / "qm9" / "qm9_full.npz"
ELEMENTS = {1: "H", 6: "C", 7: "N", 8: "O"}
SAMPLE_S = 0.5


def write_frames(path: Path, count: int) -> Path:
    """``count`` QM9 molecules (H/C/N/O only, cycled) as extended XYZ, written as they are made."""
    if path.exists():
        return path
    data = np.load(QM9)
    ptr, z, pos = data["ptr"], data["z"], data["pos"]
    keep = [i for i in range(len(ptr) - 1) if set(z[ptr[i] : ptr[i + 1]].tolist()) <= set(ELEMENTS)]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        for k in range(count):
            i = keep[k % len(keep)]
            lines = [
                f"{ELEMENTS[int(a)]} {x:.8f} {y:.8f} {w:.8f}"
                for a, (x, y, w) in zip(z[ptr[i] : ptr[i + 1]], pos[ptr[i] : ptr[i + 1]])
            ]
            handle.write(f'{len(lines)}\nProperties=species:S:1:pos:R:3 pbc="F F F"\n' + "\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


def tiny_model(path: Path) -> Path:
    import torch

    import visnet

    torch.manual_seed(0)
    model = visnet.ViSNet(hidden_channels=16, num_layers=1, num_rbf=8, num_heads=2, cutoff=5.0, max_z=10).double()
    return visnet.save_model(model, path)


def _shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("chunk-*.parquet")) if folder.is_dir() else []


def screen_run(frames: Path, output: Path, model: str, devices: int, chunk: int, sample: bool) -> dict:
    """Run ``visnet predict`` once (fresh output); wall time, steady rate and memory samples."""
    for stale in (output, output.with_name(output.name + ".errors.csv")):
        stale.unlink(missing_ok=True)
    folder = output.with_name(output.name + ".shards")
    subprocess.run(["rm", "-rf", str(folder)], check=True)
    argv = [sys.executable, "-m", "visnet.cli", "predict", str(frames), "--model", model, "--output", str(output)]
    argv += ["--devices", str(devices), "--chunk-size", str(chunk), "--keep-shards", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    begin = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, int, float]] = []  # (s, structures done, GB resident)
    while proc.poll() is None:
        if sample:
            samples.append((time.perf_counter() - begin, len(_shards(folder)) * chunk, rss_gb(proc.pid)))
        time.sleep(SAMPLE_S)
    wall = time.perf_counter() - begin
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"visnet predict failed: {err.strip().splitlines()[-1:]}")
    shards = _shards(folder)
    total = sum(1 for _ in open(output)) - 1
    return {"wall_s": wall, "structures": total, "steady": _steady_rate(shards, devices, chunk), "samples": samples}


def _steady_rate(shards: list[Path], devices: int, chunk: int) -> float:
    """Structures/s of all ranks together after each rank's first shard (start-up excluded)."""
    rate = 0.0
    for rank in range(devices):
        times = sorted(p.stat().st_mtime for p in shards if int(p.stem.split("-")[1]) % devices == rank)
        if len(times) > 1:
            rate += (len(times) - 1) * chunk / (times[-1] - times[0])
    return rate


def memory_table(samples: list[tuple[float, int, float]], bounds: list[int]) -> list[str]:
    """Rows of the resident memory sampled while the structures done were in [a, b) for
    consecutive ``bounds`` a, b (the lowest and highest sample: one sample alone moves by ~100 MB
    as batches come and go), then while the final file was written (all ``bounds[-1]`` done)."""
    rows = []
    spans = [
        (a, b, f"{a:,} – {b:,}" + (" (start-up included)" if a == 0 else "")) for a, b in zip(bounds[:-1], bounds[1:])
    ]
    for a, b, label in [*spans, (bounds[-1], float("inf"), f"{bounds[-1]:,} (writing the final file)")]:
        window = [s for s in samples if a <= s[1] < b and s[2] > 0]
        if window:
            low, high = min(s[2] for s in window) * 1024, max(s[2] for s in window) * 1024
            rows.append(f"| {label} | {window[0][0]:.0f} – {window[-1][0]:.0f} | {low:.0f} – {high:.0f} |")
    return rows


def throughput(args: argparse.Namespace) -> dict:
    """1 vs 2 processes, bundled ``default`` model, on ``args.structures`` molecules."""
    small = write_frames(args.scratch / f"qm9_{args.structures}.extxyz", args.structures)
    out = args.scratch / "results.csv"
    runs = {n: screen_run(small, out, "default", n, args.chunk_size, sample=False) for n in (1, 2)}
    return {"structures": args.structures, "chunk": args.chunk_size, "machine": machine(), "runs": runs}


def memory(args: argparse.Namespace) -> dict:
    """Resident memory of one process (tiny model) over ``args.structures`` and ``args.memory_structures``."""
    small = write_frames(args.scratch / f"qm9_{args.structures}.extxyz", args.structures)
    out = args.scratch / "results_memory.csv"
    tiny = str(tiny_model(args.scratch / "tiny.pt"))
    short = screen_run(small, out, tiny, 1, args.chunk_size, sample=True)
    big = write_frames(args.scratch / f"qm9_{args.memory_structures}.extxyz", args.memory_structures)
    long = screen_run(big, out, tiny, 1, args.chunk_size * 2, sample=True)
    sizes = {"structures": args.structures, "memory_structures": args.memory_structures}
    return {**sizes, "machine": machine(), "short": short, "long": long}


def throughput_lines(result: dict) -> list[str]:
    runs = {int(n): run for n, run in result["runs"].items()}
    one, two = runs[1], runs[2]
    lines = [
        f"Machine: {result['machine']}. Processes: Lightning DDP on CPU (gloo), one thread each.",
        "",
        f"Throughput, {result['structures']:,} QM9 molecules (H/C/N/O, 18 atoms on average), bundled `default` model,",
        f"energy + forces, float64, chunks of {result['chunk']}. Wall: the whole command (imports, DDP start-up, "
        "reading, model, shards, final CSV); steady: all ranks after each one's first shard. No floor applies "
        "(a ratio is the goal).",
        "",
        "| processes | wall (s) | structures/s (wall) | structures/s (steady) | ratio to 1 process (steady) |",
        "|---|---|---|---|---|",
    ]
    for n, run in runs.items():
        lines.append(
            f"| {n} | {run['wall_s']:.1f} | {run['structures'] / run['wall_s']:.0f} | {run['steady']:.0f} | "
            f"{run['steady'] / one['steady']:.2f}× |"
        )
    lines += [
        "",
        f"Goal: 2 processes ≥ 1.8× one. Measured {two['steady'] / one['steady']:.2f}× steady, "
        f"{one['wall_s'] / two['wall_s']:.2f}× wall. Conditions: "
        f"{result.get('conditions', 'not recorded: other jobs may have shared the cores')}.",
    ]
    return lines


def _flatness(samples: list[tuple[float, int, float]], start: int, total: int) -> str:
    """One sentence on the goal: the range of the samples once ``start`` structures were done."""
    after = [gb * 1024 for _, done, gb in samples if done >= start]
    return (
        f"Goal: memory flat from 10k to 1M structures: from {start:,} to {total:,} structures done, every "
        f"sample lay between {min(after):.0f} and {max(after):.0f} MB."
    )


def memory_lines(result: dict) -> list[str]:
    short, long = result["short"], result["long"]
    peak = lambda run: max(s[2] for s in run["samples"]) * 1024  # noqa: E731
    bounds = [long["structures"] * k // 100 for k in (0, 1, 10, 25, 50, 75, 100)]
    return [
        f"Resident memory (one process, tiny model so that reading/batching/writing dominate; machine: "
        f"{result['machine']}): {result['structures']:,} structures peak {peak(short):.0f} MB; "
        f"{long['structures']:,} structures peak {peak(long):.0f} MB, {long['wall_s']:.0f} s "
        f"({long['structures'] / long['wall_s']:.0f} structures/s). Conditions: "
        f"{result.get('conditions', 'not recorded')}. Sampled every {SAMPLE_S:g} s:",
        "",
        "| structures done | s | resident memory, lowest – highest sample (MB) |",
        "|---|---|---|",
        *memory_table(long["samples"], bounds),
        "",
        "The last row is the final file written from the shards. "
        + _flatness(long["samples"], bounds[1], long["structures"])
        + (
            ""
            if result["memory_structures"] >= 1_000_000
            else f" The goal's range is 10k to 1M; this run stopped at {result['memory_structures']:,} "
            f"(1M is the default, --memory-structures: ~{1e6 * long['wall_s'] / long['structures'] / 60:.0f} min at this rate)."
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--structures", type=int, default=10_000, help="structures of the 1 vs 2 process case")
    parser.add_argument("--memory-structures", type=int, default=1_000_000, help="structures of the long memory run")
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/visnet_bench_screening"))
    parser.add_argument(
        "--part",
        choices=("all", "throughput", "memory", "section"),
        default="all",
        help="run one part (the other part's last results, kept in --scratch, complete the section); "
        "section: only write the section from the stored results",
    )
    add_output_arguments(parser)
    add_conditions_argument(parser)
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    parts = {"throughput": throughput, "memory": memory}
    for name, measure in parts.items():
        if args.part in ("all", name):
            result = {**measure(args), "command": command_line(__file__), "conditions": args.conditions}
            (args.scratch / f"{name}.json").write_text(json.dumps(result))
    lines = ["## Screening at scale (`visnet predict` over a collection, `visnet.screen`)", ""]
    for name, render in (("throughput", throughput_lines), ("memory", memory_lines)):
        stored = args.scratch / f"{name}.json"
        if stored.is_file():
            result = json.loads(stored.read_text())
            lines += [f"`{result['command']}`  ", *render(result), ""]
    write_section(__file__, "\n".join(lines).rstrip(), args)


if __name__ == "__main__":
    main()
