"""LAMMPS coupling for BENCHMARKS.md: the step against the bare model call, NVE against ASE, 2 ranks.

    python scripts/bench_lammps.py [--dtype float32] [--steps 2] [--skip-ranks]
        [--output BENCHMARKS.md | --no-write]

1. One rank, a periodic liquid-density ethanol box (288 atoms): the time of a LAMMPS step with
   ``ViSNetLammps`` (gather mode, eager) against the bare model call on the same structure (energy,
   forces and stress: what the step hands LAMMPS), timed interleaved. Goal: ≤ 1.1×.
2. NVE, 0.5 fs, 200 steps of the 36-atom cell from the same positions and velocities, in LAMMPS
   (``fix nve``) and ASE (``VelocityVerlet``), float64: the energy drift of each. Goal: as small as ASE's.
3. Two MPI ranks (``mpiexec -n 2``, one thread each) against one on ≥ 5,000 atoms: steps/s of
   domain and gather mode over one rank (gather: the whole system), on a cubic-ish box and on a
   long box. Goal: ≥ 1.6×. Each rank's cluster is its slab plus the receptive field, (3 + 1) × 5 Å =
   20 Å, on both sides, so the work per rank is (L/2 + 40 Å) / L of one rank's: below 1/1.6 only
   for boxes longer than ~320 Å along the divided direction.

Run it alone (``flock /tmp/heavy.lock``): part 3 needs both cores. ``--worker`` is the MPI side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase import units as ase_units
from ase.build import molecule
from ase.md.verlet import VelocityVerlet
from benchlib import add_output_arguments, command_line, machine, summary, time_interleaved, write_section

from visnet import ViSNetCalculator
from visnet.inference.resolve import resolve_model
from visnet.integrations.lammps import ViSNetLammps, load_lammps
from visnet.integrations.lammps_atoms import create_atoms, lammps_frame

CELL = 7.2  # Å: four ethanol molecules per cubic cell, ~0.096 atoms/Å³ (liquid ethanol: 0.093)
BOXES = {"cube": (6, 6, 4), "long": (50, 2, 2)}  # cells along x, y, z: 5,184 and 7,200 atoms
SMALL_BOXES = {"cube": (2, 2, 1), "long": (4, 1, 1)}  # --small: a trial of the script, not a measurement


def ethanol_cell(seed: int = 0) -> Atoms:
    """Four randomly oriented ethanol molecules in a 7.2 Å periodic cell, no intermolecular pair under 1.7 Å."""
    rng = np.random.default_rng(seed)
    while True:
        parts = []
        for site in ([0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]):
            mol = molecule("CH3CH2OH")
            mol.rotate(rng.uniform(0, 360), rng.normal(size=3), center="COM")
            mol.translate((np.asarray(site) + 0.25) * CELL - mol.get_center_of_mass())
            parts.append(mol)
        atoms = sum(parts[1:], parts[0])
        atoms.set_cell([CELL] * 3)
        atoms.pbc = True
        which = np.repeat(np.arange(4), 9)
        if atoms.get_all_distances(mic=True)[which[:, None] != which[None, :]].min() > 1.7:
            return atoms


def new_lammps(screen: bool = False):
    return load_lammps().lammps(cmdargs=["-log", "none", "-nocite"] + ([] if screen else ["-screen", "none"]))


def step_vs_bare(dtype: str, calls: int) -> dict:
    """Per-step ms of a 10-step LAMMPS run against 10 bare model calls (energy, forces, stress)."""
    atoms = ethanol_cell().repeat((2, 2, 2))
    lmp = new_lammps()
    elements = create_atoms(lmp, atoms)
    ViSNetLammps(lmp, "default", elements, dtype=dtype, accel="eager")
    lmp.commands_string("fix nve all nve\ntimestep 0.0005\nthermo 1000\nrun 0")
    engine = resolve_model("default", device="cpu", dtype=dtype, accel="eager")
    frame = lammps_frame(atoms)
    z = torch.as_tensor(frame.numbers)
    pos = torch.as_tensor(frame.positions, dtype=engine.dtype)
    cell = torch.as_tensor(frame.cell.array, dtype=engine.dtype)
    pbc = torch.ones(3, dtype=torch.bool)

    def bare() -> None:
        for _ in range(10):
            engine.model(z, pos, cell=cell, pbc=pbc, compute_stress=True)

    times = time_interleaved({"lammps": lambda: lmp.command("run 10 pre no post no"), "bare": bare}, calls, 120.0)
    out = {label: summary([t / 10 for t in ts]) for label, ts in times.items()}
    out["atoms"] = len(atoms)
    return out


def nve_drift(steps: int) -> dict:
    """Total-energy drift (eV) of LAMMPS and ASE NVE runs from the same state (float64, 0.5 fs)."""
    atoms = ethanol_cell()
    lmp = new_lammps()
    visnet = ViSNetLammps(lmp, "default", create_atoms(lmp, atoms), dtype="float64", accel="eager")
    lmp.commands_string("velocity all create 300 12345 mom yes rot no\nfix nve all nve\ntimestep 0.0005\nthermo 1")
    visnet.command("run 0")
    n = lmp.get_natoms()
    order = np.argsort(lmp.numpy.extract_atom("id", nelem=n))
    ase_atoms = lammps_frame(atoms)
    ase_atoms.set_velocities(lmp.numpy.extract_atom("v", nelem=n)[order] / 1000.0 / ase_units.fs)
    ase_atoms.calc = ViSNetCalculator("default", device="cpu", dtype="float64", accel="eager")
    dynamics = VelocityVerlet(ase_atoms, timestep=0.5 * ase_units.fs)
    lammps_energy, ase_energy = [lmp.get_thermo("etotal")], [ase_atoms.get_total_energy()]
    for _ in range(steps):
        visnet.command("run 1 pre no post no")
        dynamics.run(1)
        lammps_energy.append(lmp.get_thermo("etotal"))
        ase_energy.append(ase_atoms.get_total_energy())
    lammps_energy, ase_energy = np.array(lammps_energy), np.array(ase_energy)
    return {
        "atoms": len(atoms),
        "steps": steps,
        "lammps": (float(np.abs(lammps_energy - lammps_energy[0]).max()), float(lammps_energy[-1] - lammps_energy[0])),
        "ase": (float(np.abs(ase_energy - ase_energy[0]).max()), float(ase_energy[-1] - ase_energy[0])),
        "difference": float(np.abs(lammps_energy - ase_energy - (lammps_energy[0] - ase_energy[0])).max()),
    }


def worker(box: str, mode: str, steps: int, dtype: str, out: str, small: bool) -> None:
    """MPI side of part 3: seconds per step of ``steps`` NVE steps of ``box`` (rank 0 writes ``out``)."""
    torch.set_num_threads(1)
    atoms = ethanol_cell().repeat((SMALL_BOXES if small else BOXES)[box])
    lmp = new_lammps()
    elements = create_atoms(lmp, atoms)
    visnet = ViSNetLammps(lmp, "default", elements, mode=mode, dtype=dtype, accel="eager")
    lmp.commands_string("velocity all create 300 1 loop geom\nfix nve all nve\ntimestep 0.0005\nthermo 1000")
    visnet.command("run 0")
    comm = lmp.get_mpi_comm()
    comm.Barrier()
    start = time.perf_counter()
    visnet.command(f"run {steps} pre no post no")
    comm.Barrier()
    elapsed = time.perf_counter() - start
    if lmp.extract_setting("world_rank") == 0:
        record = {
            "box": box,
            "mode": visnet.mode,
            "ranks": lmp.extract_setting("world_size"),
            "atoms": len(atoms),
            "length": list(np.round(atoms.cell.lengths(), 1)),
            "procgrid": list(lmp.extract_global("procgrid")),
            "s_per_step": elapsed / steps,
        }
        Path(out).write_text(json.dumps(record))
    lmp.close()


def ranks(dtype: str, steps: int, small: bool) -> list[dict]:
    """Part 3: each box on 1 rank (gather) and 2 ranks (domain, gather), through ``mpiexec``."""
    mpiexec = str(Path(sys.prefix) / "bin" / "mpiexec")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for box in BOXES:
            for count, mode in ((1, "gather"), (2, "domain"), (2, "gather")):
                out = Path(tmp) / f"{box}_{count}_{mode}.json"
                command = [mpiexec, "-n", str(count), sys.executable, __file__, "--worker", box, mode]
                command += ["--steps", str(steps), "--dtype", dtype, "--worker-out", str(out)]
                command += ["--small"] if small else []
                subprocess.run(command, env=env, check=True)
                records.append(json.loads(out.read_text()))
                print(records[-1], flush=True)
    return records


def section(args: argparse.Namespace, step: dict, drift: dict, parallel: list[dict]) -> str:
    lines = [
        "## LAMMPS (fix external coupling)",
        "",
        f"`{command_line(__file__)}` — {machine()}; bundled default model (3 layers, cutoff 5 Å), eager.",
        "",
        f"**One rank, step vs bare model call** ({step['atoms']} atoms, periodic ethanol at liquid density, "
        f"{args.dtype}): the bare call is energy + forces + stress of the same structure, the floor of a step.",
        "",
        "| case | median ms | min ms | ratio to floor |",
        "|---|---|---|---|",
    ]
    floor = step["bare"]["median_ms"]
    for label, name in (("bare", "bare model call (floor)"), ("lammps", "LAMMPS step (ViSNetLammps, gather)")):
        s = step[label]
        lines.append(f"| {name} | {s['median_ms']:.1f} | {s['min_ms']:.1f} | {s['median_ms'] / floor:.3f} |")
    la, aa = drift["lammps"], drift["ase"]
    lines += [
        "",
        f"**NVE, 0.5 fs, {drift['steps']} steps** ({drift['atoms']} atoms, float64, same start): max |E − E₀| / "
        f"final E − E₀: LAMMPS {la[0]:.2e} / {la[1]:+.2e} eV, ASE VelocityVerlet {aa[0]:.2e} / {aa[1]:+.2e} eV; "
        f"the two runs' energies differ by at most {drift['difference']:.1e} eV.",
    ]
    if parallel:
        lines += [
            "",
            f"**Two ranks vs one** (`mpiexec -n K`, one thread each, {args.dtype}, {args.steps} timed steps; "
            "2 cores shared with other work: read the ratios as rough):",
            "",
            "| box (Å) | atoms | ranks | mode | processor grid | s/step | speed-up vs 1 rank |",
            "|---|---|---|---|---|---|---|",
        ]
        base = {r["box"]: r["s_per_step"] for r in parallel if r["ranks"] == 1}
        for r in parallel:
            size = " × ".join(f"{x:g}" for x in r["length"])
            grid = "×".join(str(g) for g in r["procgrid"])
            speedup = base[r["box"]] / r["s_per_step"]
            lines.append(
                f"| {size} | {r['atoms']} | {r['ranks']} | {r['mode']} | {grid} | {r['s_per_step']:.2f} | {speedup:.2f}× |"
            )
        lines += [
            "",
            "Domain mode gives each rank its slab plus 20 Å (the receptive field) on both sides along the "
            "divided direction; the undivided periodic directions stay periodic. A rank's share of the "
            "work is (L/2 + 40 Å)/L of the whole, so 2 ranks reach 1.6× only on boxes longer than ~320 Å "
            "along the divided direction; on the 43 Å box they are slower than one rank.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", help="float32 (default) or float64 for parts 1 and 3")
    parser.add_argument("--calls", type=int, default=5, help="timed 10-step rounds of part 1")
    parser.add_argument("--nve-steps", type=int, default=200, help="NVE steps of part 2")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per run of part 3")
    parser.add_argument("--skip-ranks", action="store_true", help="skip part 3 (the MPI runs)")
    parser.add_argument("--small", action="store_true", help="small boxes in part 3 (a trial, not a measurement)")
    parser.add_argument("--worker", nargs=2, metavar=("BOX", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    add_output_arguments(parser)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker, args.steps, args.dtype, args.worker_out, args.small)
        return
    torch.set_num_threads(1)
    step = step_vs_bare(args.dtype, args.calls)
    print(step, flush=True)
    drift = nve_drift(args.nve_steps)
    print(drift, flush=True)
    parallel = [] if args.skip_ranks else ranks(args.dtype, args.steps, args.small)
    write_section(__file__, section(args, step, drift, parallel), args)


if __name__ == "__main__":
    main()
