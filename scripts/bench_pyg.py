"""Speed and memory of our ViSNet against PyG's ViSNet (same weights, same inputs, same process
kind), for BENCHMARKS.md.

Every case runs in a fresh subprocess (so peak RSS is the case's own) with a memory cap; PyG's
``radius_graph`` (which needs the unavailable pyg-lib) is replaced by our neighbour list, so both
models see identical edges. Usage::

    python scripts/bench_pyg.py [--threads 1 2] [--quick] [--output BENCHMARKS.md | --no-write]

The tables replace the bench_pyg section of BENCHMARKS.md (``benchlib.write_section``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

from benchlib import (
    CONFIGS,
    add_output_arguments,
    aspirin_structure,
    command_line,
    cpu_name,
    time_calls,
    water_cluster,
    write_section,
)
from benchlib import (
    run_case as run_capped,
)

MEMORY_CAP_GB = 14.0


# ----------------------------------------------------------------------------- structures
def structures(name: str):
    """(z (N,), pos (N, 3) Å, batch (N,)) for a named benchmark system."""
    import numpy as np
    import torch

    if name == "aspirin":
        atoms, copies = aspirin_structure(), 1
    elif name == "32 aspirins":
        atoms, copies = aspirin_structure(), 32
    elif name.startswith("water"):
        atoms, copies = water_cluster(int(name.split()[1].replace(",", ""))), 1
    else:
        raise ValueError(name)
    z = torch.as_tensor(np.tile(atoms.numbers, copies), dtype=torch.long)
    pos = torch.as_tensor(np.tile(atoms.positions, (copies, 1)), dtype=torch.float32)
    batch = torch.arange(copies).repeat_interleave(len(atoms))
    return z, pos, batch


# ----------------------------------------------------------------------------- one case
def build_models(config: str):
    import torch
    import torch_geometric.nn.models.visnet as pyg_visnet

    from visnet import from_pyg, radius_graph

    def our_radius_graph(x, r, batch=None, loop=False, max_num_neighbors=32, **_):
        return radius_graph(x.detach(), r, batch, self_loops=loop).edge_index

    pyg_visnet.radius_graph = our_radius_graph
    torch.manual_seed(0)
    # max_num_neighbors=10**6: PyG would otherwise drop neighbours and do less work than us.
    pyg = pyg_visnet.ViSNet(derivative=True, max_num_neighbors=10**6, **CONFIGS[config])
    return pyg, from_pyg(pyg)


def _timed(fn, repeats: int, budget_s: float) -> float:
    """Best of up to ``repeats`` calls after one warm-up, no new call past ``budget_s`` seconds (s)."""
    return min(time_calls(fn, repeats, budget_s, warmup=1, min_calls=1))


def run_case(case: dict) -> dict:
    import torch

    torch.set_num_threads(case["threads"])
    pyg, ours = build_models(case["config"])
    z, pos, batch = structures(case["system"])
    task = case["task"]
    if case["impl"] == "pyg":
        model = pyg.train() if task == "train" else pyg.eval()
        if task == "energy":
            pyg.derivative = False
        call = lambda: model(z, pos.clone(), batch)  # noqa: E731
        energy = lambda out: out[0].sum()  # noqa: E731
        forces = lambda out: out[1]  # noqa: E731
    else:
        model = ours.train() if task == "train" else ours.eval()
        call = lambda: model(z, pos, batch, compute_forces=task != "energy")  # noqa: E731
        energy = lambda out: out["energy"].sum()  # noqa: E731
        forces = lambda out: out["forces"]  # noqa: E731

    if task == "energy":

        def step():
            with torch.no_grad():
                call()
    elif task == "forces":
        step = call
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)

        def step():
            out = call()
            loss = energy(out) ** 2 * 1e-6 + (forces(out) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    seconds = _timed(step, case.get("repeats", 5), case.get("budget_s", 20.0))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {**case, "seconds": seconds, "peak_gb": peak_gb, "atoms": int(z.numel())}


# ----------------------------------------------------------------------------- driver
def spawn(case: dict) -> dict:
    """Run one case in a subprocess; reported as out of memory above MEMORY_CAP_GB resident."""
    return run_capped(__file__, case, MEMORY_CAP_GB)


def plan(threads: list[int], quick: bool) -> list[dict]:
    systems = ["aspirin", "32 aspirins", "water 1,029"]
    cases = []
    for config in CONFIGS:
        for n in threads:
            for system in systems:
                tasks = ["energy", "forces"] + (["train"] if system != "water 1,029" else [])
                if quick:
                    tasks = ["forces"]
                for task in tasks:
                    for impl in ("ours", "pyg"):
                        cases.append(dict(config=config, threads=n, system=system, task=task, impl=impl))
    return cases


def neighbor_rows() -> list[str]:
    """Neighbour-list timings: ours (auto), vesin, ASE, at 1,000 and 10,000 atoms (periodic)."""
    import numpy as np
    import torch
    from ase.neighborlist import neighbor_list

    from visnet import radius_graph

    torch.set_num_threads(1)
    rows = []
    for n in (1_000, 10_000):
        atoms = water_cluster(n - n % 3)
        atoms.cell = np.eye(3) * ((len(atoms) // 3 / 0.0334) ** (1 / 3))
        atoms.pbc = True
        pos = torch.as_tensor(atoms.positions)
        cell = torch.as_tensor(np.asarray(atoms.cell))
        timings = {}
        for method in ("dense", "cell_list", "vesin", "auto"):
            if method == "dense" and n > 5000:
                continue
            timings[method] = _timed(
                lambda pos=pos, cell=cell, method=method: radius_graph(
                    pos, 5.0, cell=cell, pbc=torch.ones(3, dtype=torch.bool), method=method
                ),
                3,
                10,
            )
        if n <= 2000:
            timings["ase"] = _timed(lambda atoms=atoms: neighbor_list("ij", atoms, 5.0), 3, 10)
        cols = " | ".join(
            f"{timings[k] * 1e3:.0f} ms" if k in timings else "—"
            for k in ("auto", "cell_list", "dense", "vesin", "ase")
        )
        ratio = f"{timings['ase'] / timings['auto']:.1f}×" if "ase" in timings else "ASE out of memory (DESIGN.md)"
        rows.append(f"| {len(atoms):,} | {cols} | {ratio} |")
    return rows


def fmt(result: dict | None) -> str:
    if result is None:
        return "—"
    if "error" in result:
        return result["error"]
    return f"{result['seconds'] * 1e3:,.1f} ms / {result['peak_gb']:.2f} GB"


def ratio(ours: dict | None, pyg: dict | None, key: str) -> str:
    if not ours or not pyg or "error" in ours:
        return "—"
    if "error" in pyg:
        return f"PyG {pyg['error']}"
    return f"{pyg[key] / ours[key]:.1f}×"


def report(results: list[dict], nl_rows: list[str], command: str) -> str:
    """The bench_pyg section of BENCHMARKS.md."""
    import torch

    index = {(r["config"], r["threads"], r["system"], r["task"], r["impl"]): r for r in results}
    lines = [
        f"Written by `{command}` on {time.strftime('%Y-%m-%d')}: {platform.machine()} {cpu_name()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, float32, CPU. Same weights (imported with "
        "`visnet.from_pyg`), same inputs and the same neighbour list for both models; PyG with "
        "`max_num_neighbors` large enough to keep every neighbour. Time = best of up to 5 runs; memory = "
        "peak RSS of a fresh process (includes ~0.4 GB for torch itself). Ratios: PyG ÷ ours "
        "(> 1 means we are faster / leaner).",
        "",
        "Tasks: *energy* = energy only (no autograd); *forces* = energy + forces (what MD needs);",
        "*train* = one AdamW step on an energy + force loss (double backward).",
        "",
    ]
    for config, params in CONFIGS.items():
        lines += [
            f"## `{config}` config: {params}",
            "",
            "| threads | system | task | ours | PyG ViSNet | speed-up | memory ratio |",
            "|---|---|---|---|---|---|---|",
        ]
        for key in sorted(
            {k[1:4] for k in index if k[0] == config},
            key=lambda k: (k[0], ["aspirin", "32 aspirins", "water 1,029"].index(k[1]), k[2]),
        ):
            ours, pyg = index.get((config, *key, "ours")), index.get((config, *key, "pyg"))
            lines.append(
                f"| {key[0]} | {key[1]} | {key[2]} | {fmt(ours)} | {fmt(pyg)} | {ratio(ours, pyg, 'seconds')} | {ratio(ours, pyg, 'peak_gb')} |"
            )
        lines.append("")
    lines += [
        "## Neighbour list (periodic water, cutoff 5 Å, 1 thread)",
        "",
        "| atoms | ours (auto) | cell list | dense | vesin | ASE `neighbor_list` | ASE ÷ ours |",
        "|---|---|---|---|---|---|---|",
        *nl_rows,
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true", help="energy+forces only")
    add_output_arguments(parser)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    results = []
    for case in plan(args.threads, args.quick):
        result = spawn(case)
        print(json.dumps(result), flush=True)
        results.append(result)
    write_section(__file__, report(results, neighbor_rows(), command_line(__file__)), args)


if __name__ == "__main__":
    main()
