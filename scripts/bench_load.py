"""Load test: one single point (energy + forces) of a ~10,000-atom periodic water box with the
default ViSNet configuration (hidden 128, 6 layers, lmax 1, 32 RBF, cutoff 5 Å, random weights).

Each case runs in a fresh subprocess, so its peak memory (``VmHWM`` of /proc/self/status) is its
own; a case whose resident memory passes ``--memory-cap`` GB (default 20) is stopped and reported.
Cases: the model API in float32 (``model(z, pos, cell=, pbc=)``) and the ASE calculator in its
default float64. The table replaces the bench_load section of BENCHMARKS.md (``benchlib.write_section``)::

    python scripts/bench_load.py [--atoms 10000] [--threads 1] [--memory-cap 20] [--output BENCHMARKS.md | --no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from benchlib import add_output_arguments, command_line, peak_gb, water_box, write_section
from benchlib import run_case as run_capped

CASES = [
    {"entry": "model", "dtype": "float32"},
    {"entry": "calculator", "dtype": "float64"},
]


# ----------------------------------------------------------------------------- one case
def _single_point(case: dict, atoms) -> tuple[float, float, int]:
    """(energy, max |force|, edges) of one energy+forces evaluation."""
    import numpy as np
    import torch

    from visnet import ViSNet, radius_graph
    from visnet.inference.calculator import ViSNetCalculator

    torch.manual_seed(0)
    model = ViSNet().to(getattr(torch, case["dtype"])).eval()  # the default configuration
    cell = torch.as_tensor(atoms.cell.array)
    edges = radius_graph(torch.as_tensor(atoms.positions), model.cutoff, cell=cell).num_edges
    if case["entry"] == "calculator":
        atoms.calc = ViSNetCalculator(model, device="cpu", dtype=case["dtype"])
        return atoms.get_potential_energy(), float(np.abs(atoms.get_forces()).max()), edges
    dtype = getattr(torch, case["dtype"])
    out = model(
        torch.as_tensor(atoms.numbers),
        torch.as_tensor(atoms.positions, dtype=dtype),
        cell=cell.to(dtype),
        pbc=torch.ones(3, dtype=torch.bool),
    )
    return out["energy"].item(), out["forces"].abs().max().item(), edges


def run_case(case: dict) -> dict:
    """Build the box, time one single point, report peak memory (runs inside the subprocess)."""
    import torch

    torch.set_num_threads(case["threads"])
    atoms = water_box(case["atoms"])
    baseline = peak_gb()
    start = time.perf_counter()
    energy, max_force, edges = _single_point(case, atoms)
    seconds = time.perf_counter() - start
    return {
        **case,
        "atoms": len(atoms),
        "edges": edges,
        "seconds": seconds,
        "peak_gb": peak_gb(),
        "baseline_gb": baseline,
        "energy": energy,
        "max_force": max_force,
    }


# ----------------------------------------------------------------------------- driver
def spawn(case: dict, memory_cap_gb: float) -> dict:
    """Run one case in a fresh subprocess; stopped above ``memory_cap_gb`` of resident memory."""
    return run_capped(__file__, case, memory_cap_gb)


def markdown(results: list[dict], threads: int, command: str) -> str:
    """The bench_load section of BENCHMARKS.md."""
    import torch

    lines = [
        f"## Load test: {results[0].get('atoms', '?'):,} atoms, one energy + forces single point",
        "",
        f"Periodic water box at 1 g/cm³, default ViSNet (hidden 128, 6 layers, lmax 1, 32 RBF, cutoff 5 Å), "
        f"random weights; CPU ({platform.processor() or platform.machine()}), {threads} torch thread(s), "
        f"torch {torch.__version__}; `{command}`. Peak memory is the process's VmHWM "
        f"(Python + torch + the structure included; baseline before the call in brackets).",
        "",
        "| entry point | dtype | edges (incl. self-loops) | time (s) | peak memory (GB) |",
        "|---|---|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['entry']} | {r['dtype']} | – | – | {r['error']} |")
        else:
            lines.append(
                f"| {r['entry']} | {r['dtype']} | {r['edges']:,} | {r['seconds']:.1f} | "
                f"{r['peak_gb']:.2f} ({r['baseline_gb']:.2f}) |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--atoms", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 2))
    parser.add_argument(
        "--memory-cap",
        type=float,
        default=20.0,
        help="GB of resident memory at which a case is stopped (below the machine's RAM, so the "
        "kernel's OOM killer never has to pick a process)",
    )
    add_output_arguments(parser)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))), flush=True)
        return
    results = []
    for case in CASES:
        result = spawn({**case, "atoms": args.atoms, "threads": args.threads}, args.memory_cap)
        print(json.dumps(result), file=sys.stderr, flush=True)
        results.append(result)
    write_section(__file__, markdown(results, args.threads, command_line(__file__)), args)


if __name__ == "__main__":
    main()
