"""LAMMPS coupling for BENCHMARKS.md: the step against the bare model call, NVE against ASE, 2 ranks.

    python scripts/bench_lammps.py [--dtype float32] [--steps 2] [--part all|single|ranks|section]
        [--boxes cube long longer] [--cases 1:gather 2:domain 2:gather] [--conditions TEXT]
        [--output BENCHMARKS.md | --no-write]

1. One rank, a periodic liquid-density ethanol box (288 atoms): the time of a LAMMPS step with
   ``ViSNetLammps`` (gather mode, eager) against the bare model call on the same structure (energy,
   forces and stress: what the step hands LAMMPS), timed interleaved. Goal: ≤ 1.1×.
2. NVE, 0.5 fs, 200 steps of the 36-atom cell from the same positions and velocities, in LAMMPS
   (``fix nve``) and ASE (``VelocityVerlet``), float64: the energy drift of each. Goal: as small as ASE's.
3. Two MPI ranks (``mpiexec -n 2``, one thread each) against one on ≥ 5,000 atoms: steps/s of
   domain and gather mode over one rank (gather: the whole system), on a cubic-ish box and on two
   long ones. Goal: ≥ 1.6×. Each rank's cluster is its slab plus the receptive field,
   (3 + 1) × 5 Å = 20 Å, on both sides; staged (``visnet.model.staged``), the three layers run
   on the edges of atoms within 2, 1 and 0 hops of the slab (~4 Å a hop in this liquid). The
   workers count those edges: a rank's share of the whole system's layer edges bounds the speed-up
   (the box must be long along the divided direction for 2 ranks to reach 1.6×).

Parts 1-2 (``--part single``) and part 3 (``--part ranks``: run it alone, both cores, e.g. with the
other jobs paused) can run apart: each stores its results in ``--scratch`` and the section is written
from the last stored results of both (``--part section`` writes it without measuring); a rerun of
some ``--boxes``/``--cases`` replaces those rows only, and each row names its run. ``--conditions``
says what else ran on the machine (e.g. "other jobs paused"); it goes into the section.
``--worker`` is the MPI side.
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
from benchlib import (
    add_conditions_argument,
    add_output_arguments,
    command_line,
    load,
    machine,
    summary,
    time_interleaved,
    write_section,
)

from visnet import ViSNetCalculator
from visnet.inference.resolve import resolve_model
from visnet.integrations.lammps import ViSNetLammps, load_lammps
from visnet.integrations.lammps_atoms import create_atoms, lammps_frame
from visnet.integrations.lammps_box import read_box
from visnet.integrations.lammps_domain import cluster, receptive_field
from visnet.model.staged import stage_neighbors
from visnet.neighbors import radius_graph

CELL = 7.2  # Å: four ethanol molecules per cubic cell, ~0.096 atoms/Å³ (liquid ethanol: 0.093)
# Cells along x, y, z: 5,184, 7,200 and 14,400 atoms (43 x 43 x 29, 360 x 14 x 14, 720 x 14 x 14 Å).
BOXES = {"cube": (6, 6, 4), "long": (50, 2, 2), "longer": (100, 2, 2)}
CASES = ("1:gather", "2:domain", "2:gather")  # ranks:mode of part 3, the first the reference
SMALL_BOXES = {"cube": (2, 2, 1), "long": (4, 1, 1), "longer": (8, 1, 1)}  # --small: a trial, not a measurement


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
    edges = comm.allgather(layer_edges(visnet))
    if lmp.extract_setting("world_rank") == 0:
        record = {
            "box": box,
            "mode": visnet.mode,
            "ranks": lmp.extract_setting("world_size"),
            "atoms": len(atoms),
            "length": list(np.round(atoms.cell.lengths(), 1)),
            "procgrid": list(lmp.extract_global("procgrid")),
            "s_per_step": elapsed / steps,
            "layer_edges": max(edges),
        }
        Path(out).write_text(json.dumps(record))
    lmp.close()


def layer_edges(visnet: ViSNetLammps) -> float:
    """Edges the model's layers run on at this step, on this rank, averaged over the layers: its
    staged cluster in domain mode, the whole system in gather mode (rank 0; 0 on the others)."""
    lmp, model = visnet.lmp, visnet.engine.model
    box, nlocal = read_box(lmp), lmp.extract_global("nlocal")
    if visnet.mode == "gather":
        pos = np.ctypeslib.as_array(lmp.gather_atoms("x", 1, 3)).reshape(-1, 3)  # collective
        if lmp.extract_setting("world_rank") != 0:
            return 0.0
        cell, pbc = torch.as_tensor(box.cell)[None], torch.as_tensor(box.pbc)[None]
        return float(radius_graph(torch.as_tensor(pos), model.cutoff, None, cell, pbc, self_loops=True).num_edges)
    count = nlocal + lmp.extract_global("nghost")
    x = lmp.numpy.extract_atom("x", nelem=count, dim=3)
    tags = lmp.numpy.extract_atom("id", nelem=count)
    procgrid = np.asarray(lmp.extract_global("procgrid"))
    _, pos, wrap = cluster(np.array(x), np.array(tags), nlocal, box, procgrid, receptive_field(visnet.engine))
    cell = torch.as_tensor(box.cell)[None] if wrap.any() else None
    pbc = torch.as_tensor(wrap)[None] if wrap.any() else None
    graph = radius_graph(torch.as_tensor(pos), model.cutoff, None, cell, pbc, self_loops=True)
    layers = int(model.hparams["num_layers"])
    return float(np.mean(stage_neighbors(graph, len(pos), nlocal, layers).stage_edges[1:]))


def ranks(dtype: str, steps: int, small: bool, boxes: list[str], cases: list[str]) -> list[dict]:
    """Part 3: each box on 1 rank (gather) and 2 ranks (domain, gather), through ``mpiexec``
    (``cases``: which of "1:gather", "2:domain", "2:gather")."""
    mpiexec = str(Path(sys.prefix) / "bin" / "mpiexec")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for box in boxes:
            for count, mode in ((int(n), m) for n, m in (case.split(":") for case in cases)):
                out = Path(tmp) / f"{box}_{count}_{mode}.json"
                command = [mpiexec, "-n", str(count), sys.executable, __file__, "--worker", box, mode]
                command += ["--steps", str(steps), "--dtype", dtype, "--worker-out", str(out)]
                command += ["--small"] if small else []
                subprocess.run(command, env=env, check=True)
                records.append(json.loads(out.read_text()))
                print(records[-1], flush=True)
    return records


def store_ranks(path: Path, run: dict, records: list[dict]) -> None:
    """Add part 3's ``records`` (measured by ``run``: command, machine, ...) to those stored in
    ``path``: each replaces a stored one of the same box, ranks and mode; the others stay."""
    stored = json.loads(path.read_text()) if path.is_file() else {"runs": [], "records": []}
    key = lambda r: (r["box"], r["ranks"], r["mode"])  # noqa: E731
    new = {key(r) for r in records}
    kept = [r for r in stored["records"] if key(r) not in new]
    runs = stored["runs"] + [run]
    merged = kept + [{**r, "run": len(runs) - 1} for r in records]
    used = sorted({r["run"] for r in merged})
    renumber = {old: k for k, old in enumerate(used)}
    merged = [{**r, "run": renumber[r["run"]]} for r in merged]
    order = {(box, int(n), m): k for k, (box, (n, m)) in enumerate((b, c.split(":")) for b in BOXES for c in CASES)}
    merged.sort(key=lambda r: order[key(r)])
    path.write_text(json.dumps({"runs": [runs[k] for k in used], "records": merged}))


def single_lines(result: dict) -> list[str]:
    """Parts 1 and 2 of the section."""
    step, drift = result["step"], result["drift"]
    lines = [
        f"`{result['command']}` — {result['machine']}; {result.get('conditions', 'conditions not recorded')}; "
        "bundled default model (3 layers, cutoff 5 Å), eager.",
        "",
        f"**One rank, step vs bare model call** ({step['atoms']} atoms, periodic ethanol at liquid density, "
        f"{result['dtype']}): the bare call is energy + forces + stress of the same structure, the floor of a step.",
        "",
        "| case | median ms | min ms | ratio to floor |",
        "|---|---|---|---|",
    ]
    floor = step["bare"]["median_ms"]
    for label, name in (("bare", "bare model call (floor)"), ("lammps", "LAMMPS step (ViSNetLammps, gather)")):
        s = step[label]
        lines.append(f"| {name} | {s['median_ms']:.1f} | {s['min_ms']:.1f} | {s['median_ms'] / floor:.3f} |")
    la, aa = drift["lammps"], drift["ase"]
    return lines + [
        "",
        f"**NVE, 0.5 fs, {drift['steps']} steps** ({drift['atoms']} atoms, float64, same start): max |E − E₀| / "
        f"final E − E₀: LAMMPS {la[0]:.2e} / {la[1]:+.2e} eV, ASE VelocityVerlet {aa[0]:.2e} / {aa[1]:+.2e} eV; "
        f"the two runs' energies differ by at most {drift['difference']:.1e} eV.",
    ]


def ranks_lines(stored: dict) -> list[str]:
    """Part 3 of the section (``stored``: the runs and their records, ``store_ranks``): speed-ups,
    and the bound that a rank's share of the layers' edges sets."""
    lines = ["**Two ranks vs one** (`mpiexec -n K`, one thread each, one untimed step before the timed ones):", ""]
    for k, run in enumerate(stored["runs"]):
        lines.append(
            f"- run {k + 1}: `{run['command']}`: {run['dtype']}, {run['steps']} timed step(s); {run['machine']} "
            f"before the runs, {run['load_after']:.1f} after them (2 of it the ranks themselves); "
            f"{run.get('conditions', 'conditions not recorded')}."
        )
    lines += [
        "",
        "| box (Å) | atoms | ranks | mode | processor grid | s/step | speed-up vs 1 rank | "
        "layer edges of the busiest rank / whole system | speed-up / its bound | run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    records = stored["records"]
    base = {r["box"]: r for r in records if r["ranks"] == 1}
    for r in records:
        size = " × ".join(f"{x:g}" for x in r["length"])
        grid = "×".join(str(g) for g in r["procgrid"])
        one = base[r["box"]]
        share = r["layer_edges"] / one["layer_edges"]
        lines.append(
            f"| {size} | {r['atoms']} | {r['ranks']} | {r['mode']} | {grid} | {r['s_per_step']:.2f} | "
            f"{one['s_per_step'] / r['s_per_step']:.2f}× | {share:.3f} | "
            f"{one['s_per_step'] / r['s_per_step'] * share:.2f} | {r['run'] + 1} |"
        )
    domain = [r for r in records if r["mode"] == "domain"]
    best = max(domain, key=lambda r: base[r["box"]]["s_per_step"] / r["s_per_step"])
    ratio = base[best["box"]]["s_per_step"] / best["s_per_step"]
    return lines + [
        "",
        "Domain mode gives each rank its slab plus the receptive field, (3 + 1) × 5 Å = 20 Å, on both sides "
        "along the divided direction (the undivided periodic directions stay periodic). 20 Å is what "
        "exactness needs: the neighbour embedding is a message-passing step, so an atom's energy feels atoms "
        "4 edges away (`test_receptive_field_is_one_more_than_the_layers`); LAMMPS adds its neighbour skin "
        "to the ghost cutoff for the atoms that move between rebuilds. The shell is staged "
        "(`visnet.model.staged`): layer k of 3 runs only on the edges of atoms within 3 − k hops of the "
        "rank's own atoms (the embeddings within 3), so the shell's outer part costs its neighbour list and "
        "node work only. The layers' edges of the busiest rank over the whole system's are a rank's share "
        "of the work: its inverse bounds the speed-up. The shell has a fixed width, so its share falls as "
        "the box grows along the divided direction: the box's shape decides whether 2 ranks can reach 1.6× "
        "at all (a cube of this size cannot). What the bound leaves out: the neighbour list and node work "
        "over the whole cluster, the MPI exchanges each step, two ranks sharing one memory bus; and rows "
        "of different runs (last column) vary by a few per cent (3 timed steps each; 2-rank gather, where "
        "rank 0 does all the work, should never beat 1 rank).",
        "",
        f"Goal ≥ 1.6×: best measured {ratio:.2f}× (domain, {best['atoms']:,} atoms, "
        f"{' × '.join(f'{x:g}' for x in best['length'])} Å).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", help="float32 (default) or float64 for parts 1 and 3")
    parser.add_argument("--calls", type=int, default=5, help="timed 10-step rounds of part 1")
    parser.add_argument("--nve-steps", type=int, default=200, help="NVE steps of part 2")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per run of part 3")
    parser.add_argument(
        "--part",
        choices=("all", "single", "ranks", "section"),
        default="all",
        help="single: parts 1-2; ranks: part 3 (the MPI runs); section: write the section from the stored results",
    )
    parser.add_argument("--boxes", nargs="+", choices=sorted(BOXES), default=list(BOXES), help="boxes of part 3")
    parser.add_argument(
        "--cases", nargs="+", choices=CASES, default=list(CASES), help="ranks:mode runs of part 3 (each box)"
    )
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/visnet_bench_lammps"), help="stored results")
    parser.add_argument("--small", action="store_true", help="small boxes in part 3 (a trial, not a measurement)")
    parser.add_argument("--worker", nargs=2, metavar=("BOX", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    add_output_arguments(parser)
    add_conditions_argument(parser)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker, args.steps, args.dtype, args.worker_out, args.small)
        return
    torch.set_num_threads(1)
    args.scratch.mkdir(parents=True, exist_ok=True)
    common = {
        "command": command_line(__file__),
        "machine": machine(),
        "dtype": args.dtype,
        "conditions": args.conditions,
    }
    if args.part in ("all", "single"):
        step = step_vs_bare(args.dtype, args.calls)
        print(step, flush=True)
        drift = nve_drift(args.nve_steps)
        print(drift, flush=True)
        (args.scratch / "single.json").write_text(json.dumps({**common, "step": step, "drift": drift}))
    if args.part in ("all", "ranks"):
        records = ranks(args.dtype, args.steps, args.small, args.boxes, args.cases)
        store_ranks(args.scratch / "ranks.json", {**common, "steps": args.steps, "load_after": load()}, records)
    lines = ["## LAMMPS (fix external coupling)", ""]
    for name, render in (("single", single_lines), ("ranks", ranks_lines)):
        stored = args.scratch / f"{name}.json"
        if stored.is_file():
            lines += [*render(json.loads(stored.read_text())), ""]
    write_section(__file__, "\n".join(lines).rstrip() + "\n", args)


if __name__ == "__main__":
    main()
