#!/usr/bin/env python
"""``visnet md aspirin`` with no flag (``--accel auto``) against ``--accel eager``: the first run's
wall time with a cold cache, and the steps/s once the cache is warm (issue 21's goals: cold wall
time ≤ 1.25× eager's, warm steps/s ≥ 2× eager's).

In a fresh ``VISNET_CACHE_DIR`` (the user's cache is never touched), per dtype: an eager run, the
cold auto run (it starts the background build), a wait until the package is in the cache, the warm
auto run, and a second eager run (the ratios use the mean of the two eager runs, so load drift hits
both sides). Every run is a fresh ``visnet md`` process, as a user starts it; its wall time (what
the user waits: imports, model load and the MD loop), its CPU time (user + system of that process;
the background build is not its child) and the steps/s of its MD loop are reported. No matmul floor
applies: the goals are ratios against eager in the same conditions.

    OMP_NUM_THREADS=1 flock /tmp/heavy.lock python scripts/bench_accel.py [--steps 1000] [--dtypes float64 float32]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import REPO, add_output_arguments, command_line, load, machine, write_section

SUMMARY = re.compile(r"(\d+) steps in ([\d.]+) s \(([\d.]+) steps/s\)")


def run_md(args: argparse.Namespace, dtype: str, accel: str | None, cache: Path, out: Path) -> dict:
    """One ``visnet md aspirin`` process: wall s, CPU s, MD-loop steps/s and the form it reports."""
    command = [sys.executable, "-m", "visnet.cli", "md", "aspirin", "--steps", str(args.steps)]
    command += ["--dtype", dtype, "--no-progress", "--no-plots", "--output-dir", str(out)]
    command += ["--accel", accel] if accel else []
    env = dict(os.environ, VISNET_CACHE_DIR=str(cache), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    match = SUMMARY.search(done.stdout)
    form = re.search(r"^model: (.*)$", done.stdout, re.MULTILINE)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "accel": accel or "auto (no flag)",
        "wall": wall,
        "cpu": cpu,
        "rate": float(match.group(3)) if match else float("nan"),
        "form": form.group(1) if form else "?",
        "stderr": [line for line in done.stderr.splitlines() if "visnet:" in line],
    }


def wait_for_package(cache: Path, timeout: float) -> float | None:
    """Seconds until a package is in ``cache`` (None after ``timeout``)."""
    from visnet.accel.cache import FastPathCache

    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if FastPathCache(cache).entries():
            return time.perf_counter() - start
        time.sleep(2.0)
    return None


def bench_dtype(args: argparse.Namespace, dtype: str, work: Path) -> tuple[list[dict], dict]:
    cache = work / f"cache-{dtype}"
    runs = [run_md(args, dtype, "eager", cache, work / "eager1")]
    print(f"{dtype} eager: {runs[-1]['wall']:.1f} s", flush=True)
    cold_start = time.perf_counter()
    runs.append(run_md(args, dtype, None, cache, work / "cold"))
    runs[-1]["accel"] += ", cold cache"
    print(f"{dtype} cold auto: {runs[-1]['wall']:.1f} s; {runs[-1]['form']}", flush=True)
    waited = wait_for_package(cache, args.build_timeout)
    built = None if waited is None else time.perf_counter() - cold_start
    runs.append(run_md(args, dtype, None, cache, work / "warm"))
    runs[-1]["accel"] += ", warm cache"
    print(f"{dtype} warm auto: {runs[-1]['rate']:.1f} steps/s; {runs[-1]['form']}", flush=True)
    runs.append(run_md(args, dtype, "eager", cache, work / "eager2"))
    eager_wall = (runs[0]["wall"] + runs[3]["wall"]) / 2
    eager_rate = (runs[0]["rate"] + runs[3]["rate"]) / 2
    ratios = {
        "cold_wall": runs[1]["wall"] / eager_wall,
        "warm_rate": runs[2]["rate"] / eager_rate,
        "warm_wall": runs[2]["wall"] / eager_wall,
        "built_after": built,
    }
    return runs, ratios


def section(args: argparse.Namespace, results: dict[str, tuple[list[dict], dict]], loads: tuple[float, float]) -> str:
    lines = [
        "## `visnet md aspirin`: accel auto (the default) against eager (issue 21 item 1)",
        "",
        f"`{command_line(__file__)}` — {machine()}; load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end.",
        "",
        f"{args.steps} Langevin steps of aspirin with the bundled model, each run a fresh `visnet md` process in a",
        "fresh cache folder: eager, the first auto run (cold cache: it runs eagerly and starts the background",
        "build at nice 19), the second auto run once the package is cached (warm), eager again. Wall: what",
        "the user waits (imports, model, MD loop); CPU: user + system of that process (the background build",
        "is not its child); steps/s: the MD loop's. No floor applies: the goals are ratios against eager.",
        "",
        "| dtype | run | wall (s) | CPU (s) | MD steps/s | form |",
        "|---|---|---:|---:|---:|---|",
    ]
    for dtype, (runs, _) in results.items():
        for r in runs:
            lines.append(
                f"| {dtype} | {r['accel']} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['rate']:.1f} | {r['form']} |"
            )
    lines.append("")
    for dtype, (_, ratio) in results.items():
        built = (
            "not within the timeout"
            if ratio["built_after"] is None
            else f"{ratio['built_after']:.0f} s after the cold run started"
        )
        lines.append(
            f"- {dtype}: cold-cache wall time {ratio['cold_wall']:.2f}× eager's (goal ≤ 1.25); warm-cache steps/s "
            f"{ratio['warm_rate']:.2f}× eager's (goal ≥ 2), wall {ratio['warm_wall']:.2f}×; package ready {built}."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="MD steps per run (visnet md's default)")
    parser.add_argument("--dtypes", nargs="+", default=["float64"], choices=["float64", "float32"])
    parser.add_argument("--build-timeout", type=float, default=1200.0, help="seconds to wait for the background build")
    add_output_arguments(parser)
    args = parser.parse_args()
    start_load = load()
    with tempfile.TemporaryDirectory(prefix="bench-accel-") as tmp:
        results = {dtype: bench_dtype(args, dtype, Path(tmp)) for dtype in args.dtypes}
    write_section(__file__, section(args, results, (start_load, load())), args)


if __name__ == "__main__":
    main()
