"""MD figures of the bundled default model for BENCHMARKS.md: steps per second (aspirin and a
~1,000-atom periodic benzene box), the calculator's overhead over the bare model call, NVE drift in
float64 and float32, and the stability of 500 K Langevin runs of every molecule the model covers.

    python scripts/bench_md.py [--stability-steps 2000] [--nve-steps 2000] [--output BENCHMARKS.md | --no-write]

The results replace the bench_md section of BENCHMARKS.md (``benchlib.write_section``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.build import molecule
from benchlib import add_output_arguments, command_line, machine, time_interleaved, write_section

from visnet import ViSNetCalculator, load_model
from visnet.dynamics import MDConfig, run_md
from visnet.structures.molecules import load_structure, named_structures


def benzene_box(nx: int = 6, ny: int = 5, nz: int = 3) -> Atoms:
    """Periodic stack of parallel benzene molecules (nx*ny*nz*12 atoms; 1,080 by default): 6.5 Å
    apart in the ring plane, 3.8 Å (pi-stacking) across it. For timing only: the default model was
    trained on isolated molecules, so intermolecular forces here are not meaningful."""
    benzene = molecule("C6H6")  # ring in the xy plane
    spacing = np.array([6.5, 6.5, 3.8])
    atoms = Atoms()
    for idx in np.ndindex(nx, ny, nz):
        m = benzene.copy()
        m.translate(np.array(idx) * spacing)
        atoms += m
    atoms.cell = np.diag(np.array([nx, ny, nz]) * spacing)
    atoms.pbc = True
    return atoms


def steps_per_second(atoms: Atoms, dtype: str, steps: int) -> float:
    config = MDConfig(
        accel="eager",  # the eager model throughout (accel="auto" could switch mid-run: scripts/bench_accel.py)
        ensemble="langevin",
        temperature=300,
        steps=steps,
        dtype=dtype,
        progress=False,
        plots=False,
        output_dir=Path(tempfile.mkdtemp()),
        log_interval=steps,
        traj_interval=steps,
        max_temperature=10_000,
        max_force=1e6,
        min_distance=0.1,
        threads=1,
    )
    result = run_md(config, atoms=atoms.copy())
    return result.steps_done / result.wall_time


def calculator_overhead(atoms: Atoms, repeats: int = 50) -> tuple[float, float]:
    """(ms per bare model call incl. neighbour list, ms per calculator call with a moved atom):
    medians of ``repeats`` calls each after 5 warm-up calls, the two interleaved."""
    model = load_model("default", dtype="float64")
    z = torch.as_tensor(atoms.numbers)
    pos = torch.as_tensor(atoms.positions)
    calc = ViSNetCalculator(model=model, accel="eager")
    atoms = atoms.copy()
    atoms.calc = calc

    def bare():
        out = model(z, pos)
        out["energy"].item(), out["forces"].numpy()

    def through_calc():
        atoms.positions[0, 0] += 1e-4  # a change, as in MD: forces recomputed every call
        atoms.get_forces()

    times = time_interleaved({"bare": bare, "calc": through_calc}, repeats, warmup=5, min_calls=repeats)
    return statistics.median(times["bare"]) * 1e3, statistics.median(times["calc"]) * 1e3


def nve_drift(dtype: str, steps: int) -> str:
    config = MDConfig(
        accel="eager",
        structure="aspirin",
        ensemble="nve",
        temperature=300,
        timestep=0.25,
        steps=steps,
        dtype=dtype,
        progress=False,
        plots=False,
        output_dir=Path(tempfile.mkdtemp()),
        log_interval=10,
        traj_interval=steps,
        threads=1,
    )
    result = run_md(config)
    return result.drift.report() if result.drift else result.message or "no drift estimate"


def stability(steps: int) -> list[str]:
    rows = []
    for name in sorted(named_structures()):
        config = MDConfig(
            structure=name,
            ensemble="langevin",
            temperature=500,
            timestep=0.5,
            steps=steps,
            progress=False,
            plots=False,
            output_dir=Path(tempfile.mkdtemp()),
            log_interval=20,
            traj_interval=steps,
            threads=1,
        )
        result = run_md(config)
        temps = result.thermo["temperature"]
        status = "stable" if result.completed else f"stopped: {result.message}"
        rows.append(
            f"| {name} | {result.steps_done * 0.5 / 1000:.2f} | {np.mean(temps[len(temps) // 5 :]):.0f} | "
            f"{np.max(temps):.0f} | {status} |"
        )
    return rows


def report(args: argparse.Namespace) -> str:
    torch.set_num_threads(1)
    aspirin = load_structure("aspirin")
    box = benzene_box()
    lines = [
        "## Molecular dynamics with the bundled default model (1 thread, Langevin 300 K, 0.5 fs)",
        "",
        f"`{command_line(__file__)}` on {time.strftime('%Y-%m-%d')}: {machine()}.",
        "",
        "| system | atoms | float64 steps/s | float32 steps/s |",
        "|---|---|---|---|",
    ]
    for label, atoms, steps in (("aspirin", aspirin, 400), ("benzene box (periodic)", box, 10)):
        f64, f32 = (steps_per_second(atoms, dtype, steps) for dtype in ("float64", "float32"))
        lines.append(f"| {label} | {len(atoms)} | {f64:.3g} | {f32:.3g} |")
    bare, calc = calculator_overhead(aspirin)
    lines += [
        "",
        f"Calculator overhead (aspirin, float64, forces recomputed every call): bare model call (building its neighbour list, as `model(z, pos)` does) "
        f"{bare:.2f} ms, through `ViSNetCalculator` (Verlet list reused) {calc:.2f} ms: **{(calc / bare - 1) * 100:+.1f} %** "
        "(goal ≤ 10 %).",
        "",
    ]
    lines += [
        f"NVE energy drift (aspirin from 300 K, 0.25 fs, {args.nve_steps} steps, linear fit of total energy vs time):",
        "",
    ]
    for dtype in ("float64", "float32"):
        lines.append(f"* {dtype}: {nve_drift(dtype, args.nve_steps)}")
    lines += [
        "",
        f"Stability: Langevin 500 K, 0.5 fs, {args.stability_steps} steps, blow-up guard on "
        "(forces > 50 eV/Å, atoms < 0.5 Å apart, T > 2,000 K):",
        "",
        "| molecule | ps | mean T (K, after 20 %) | max T (K) | result |",
        "|---|---|---|---|---|",
        *stability(args.stability_steps),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stability-steps", type=int, default=2000)
    parser.add_argument("--nve-steps", type=int, default=2000)
    add_output_arguments(parser)
    args = parser.parse_args()
    write_section(__file__, report(args), args)


if __name__ == "__main__":
    main()
