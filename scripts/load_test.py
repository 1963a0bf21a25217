"""Load test: one single point (energy + forces) of a ~10,000-atom periodic water box with the
default ViSNet configuration (hidden 128, 6 layers, lmax 1, 32 RBF, cutoff 5 Å, random weights).

Each case runs in a fresh subprocess, so its peak memory (``VmHWM`` of /proc/self/status) is its
own; a case whose resident memory passes ``--memory-cap`` GB (default 20) is stopped and reported.
Cases: the model API in float32 (``model(z, pos, cell=, pbc=)``) and the ASE calculator in its
default float64. Prints a markdown snippet for BENCHMARKS.md::

    python scripts/load_test.py [--atoms 10000] [--threads 1] [--memory-cap 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from capped_subprocess import run_case as run_capped

WATER_DENSITY = 0.0334  # molecules / Å³ at 300 K, 1 g/cm³
CASES = [
    {"entry": "model", "dtype": "float32"},
    {"entry": "calculator", "dtype": "float64"},
]


# ----------------------------------------------------------------------------- structure
def water_box(num_atoms: int, seed: int = 0):
    """Periodic water at liquid density: randomly oriented rigid molecules on a jittered cubic grid.

    Returns:
        ase.Atoms with 3 * (num_atoms // 3) atoms, a cubic cell and pbc=True.
    """
    import numpy as np
    from ase import Atoms
    from scipy.spatial.transform import Rotation

    molecules = num_atoms // 3
    side = (molecules / WATER_DENSITY) ** (1 / 3)
    per_edge = int(np.ceil(molecules ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(per_edge)] * 3, indexing="ij"), -1).reshape(-1, 3)[:molecules]
    rng = np.random.default_rng(seed)
    centres = (grid + 0.5) * side / per_edge + rng.normal(0, 0.05, grid.shape)
    template = np.array([[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0], [-0.2400, 0.9266, 0.0]])
    rotations = Rotation.random(molecules, random_state=seed).as_matrix()
    pos = centres[:, None, :] + np.einsum("mij,aj->mai", rotations, template)
    return Atoms(numbers=[8, 1, 1] * molecules, positions=pos.reshape(-1, 3), cell=np.eye(3) * side, pbc=True)


# ----------------------------------------------------------------------------- one case
def _vm_hwm_gb() -> float:
    """Peak resident memory of this process so far (VmHWM), GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def _single_point(case: dict, atoms) -> tuple[float, float, int]:
    """(energy, max |force|, edges) of one energy+forces evaluation."""
    import numpy as np
    import torch

    from visnet import ViSNet, radius_graph
    from visnet.calculator import ViSNetCalculator

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
    baseline = _vm_hwm_gb()
    start = time.perf_counter()
    energy, max_force, edges = _single_point(case, atoms)
    seconds = time.perf_counter() - start
    return {
        **case,
        "atoms": len(atoms),
        "edges": edges,
        "seconds": seconds,
        "peak_gb": _vm_hwm_gb(),
        "baseline_gb": baseline,
        "energy": energy,
        "max_force": max_force,
    }


# ----------------------------------------------------------------------------- driver
def spawn(case: dict, memory_cap_gb: float) -> dict:
    """Run one case in a fresh subprocess; stopped above ``memory_cap_gb`` of resident memory."""
    return run_capped(__file__, case, memory_cap_gb)


def markdown(results: list[dict], threads: int) -> str:
    """The BENCHMARKS.md snippet."""
    import torch

    lines = [
        f"### Load test: {results[0].get('atoms', '?'):,} atoms, one energy + forces single point",
        "",
        f"Periodic water box at 1 g/cm³, default ViSNet (hidden 128, 6 layers, lmax 1, 32 RBF, cutoff 5 Å), "
        f"random weights; CPU ({platform.processor() or platform.machine()}), {threads} torch thread(s), "
        f"torch {torch.__version__}; `python scripts/load_test.py`. Peak memory is the process's VmHWM "
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
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))), flush=True)
        return
    results = []
    for case in CASES:
        result = spawn({**case, "atoms": args.atoms, "threads": args.threads}, args.memory_cap)
        print(json.dumps(result), file=sys.stderr, flush=True)
        results.append(result)
    print(markdown(results, args.threads))


if __name__ == "__main__":
    main()
