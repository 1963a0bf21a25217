"""E+F timing of the bundled model (eager, 1 thread) in two or more source trees: compare checkouts.

    git worktree add /tmp/old <commit>
    python scripts/bench_refactor.py --trees /tmp/old . [--rounds 2] [--output BENCHMARKS.md | --no-write]

Each tree is timed in a fresh process whose ``PYTHONPATH`` starts with the tree (so ``import visnet``
imports that tree's package), the trees alternated ``--rounds`` times: the run-to-run spread on a
shared machine is ±15 %. Per process: median milliseconds per energy+forces call for aspirin (40
calls after 5 warm-up) and a batch of 32 aspirins 30 Å apart (5 calls after 2), float32 and float64,
1 torch thread. The table replaces the bench_refactor section of BENCHMARKS.md
(``benchlib.write_section``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from benchlib import (
    add_output_arguments,
    aspirin_structure,
    command_line,
    machine,
    run_case,
    time_calls,
    write_section,
)

COLUMNS = ("float32", "float32 x32", "float64", "float64 x32")
MD_STEPS, MD_WARMUP = 100, 10  # velocity-Verlet steps of aspirin through the calculator (float32)
MEMORY_CAP_GB = 8.0


def median_ms(call, calls: int, warmup: int) -> float:
    """Median wall time of ``call()`` in ms: ``calls`` timed calls after ``warmup`` untimed ones."""
    return statistics.median(time_calls(call, calls, warmup=warmup, min_calls=calls)) * 1e3


def time_tree(case: dict) -> dict:
    """Inside the subprocess: the timings of the ``visnet`` that ``PYTHONPATH`` selects."""
    import visnet

    torch.set_num_threads(1)
    atoms = aspirin_structure()
    results = {}
    for dtype in ("float32", "float64"):
        model = visnet.load_model("default", dtype=dtype)
        z = torch.as_tensor(atoms.numbers, dtype=torch.long)
        pos = torch.as_tensor(atoms.positions, dtype=getattr(torch, dtype))
        results[dtype] = median_ms(lambda m=model, z=z, p=pos: m(z, p), 40, 5)
        zz = z.repeat(32)
        pp = torch.cat([pos + 30.0 * k for k in range(32)])  # 30 Å apart: 32 separate molecules
        batch = torch.arange(32).repeat_interleave(len(z))
        results[f"{dtype} x32"] = median_ms(lambda m=model, z=zz, p=pp, b=batch: m(z, p, b), 5, 2)
    return {**case, "visnet": visnet.__file__, "ms": results, "md_steps_per_s": md_steps_per_s(visnet, atoms)}


def md_steps_per_s(visnet, atoms) -> float:
    """Velocity-Verlet steps per second of ``atoms`` with the bundled model through the ASE
    calculator (float32): the MD path every user gets (neighbour list reuse, checks, conversion)."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms = atoms.copy()
    atoms.calc = visnet.ViSNetCalculator(model="default", dtype="float32")
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    dyn.run(MD_WARMUP)
    start = time.perf_counter()
    dyn.run(MD_STEPS)
    return MD_STEPS / (time.perf_counter() - start)


def markdown(results: list[dict], command: str) -> str:
    """The bench_refactor section of BENCHMARKS.md."""
    lines = [
        "## Refactor check: E+F of the bundled model per source tree",
        "",
        f"`{command}` on {time.strftime('%Y-%m-%d')}: {machine()}. Median ms per energy + forces call, eager, "
        "1 torch thread, each row a fresh process (trees alternated); aspirin (21 atoms) and 32 aspirins; MD: "
        f"velocity-Verlet steps/s of aspirin through the ASE calculator (float32, {MD_STEPS} steps after {MD_WARMUP}).",
        "",
        "| tree | round | " + " | ".join(f"{c} ms" for c in COLUMNS) + " | MD steps/s |",
        "|---|---:|" + "---:|" * (len(COLUMNS) + 1),
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| `{r['tree']}` | {r['round']} | {r['error']} |" + " — |" * len(COLUMNS))
        else:
            lines.append(
                f"| `{r['tree']}` | {r['round']} | "
                + " | ".join(f"{r['ms'][c]:.1f}" for c in COLUMNS)
                + f" | {r['md_steps_per_s']:.1f} |"
            )
    return "\n".join(lines)


def main() -> None:
    """Parse arguments; time one tree (``--case``) or alternate all trees and write the section."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--trees", nargs="+", default=["."], help="source trees (each with a visnet/ folder)")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the trees")
    add_output_arguments(parser)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(time_tree(json.loads(args.case))), flush=True)
        return
    for tree in args.trees:
        if not (Path(tree) / "visnet" / "__init__.py").is_file():
            parser.error(f"{tree} has no visnet/__init__.py")
    results = []
    for round_ in range(1, args.rounds + 1):
        for tree in args.trees:
            case = {"tree": tree, "round": round_, "threads": 1}
            result = run_case(__file__, case, MEMORY_CAP_GB, env={"PYTHONPATH": str(Path(tree).resolve())})
            print(json.dumps(result), flush=True)
            results.append(result)
    write_section(__file__, markdown(results, command_line(__file__)), args)


if __name__ == "__main__":
    main()
