"""GPU benchmark (issues 11, 21): CUDA vs CPU parity, MD step times, large systems and training.

Systems: a 138-atom peptide (GYDPETGTWG, chignolin-sized, built with RDKit) and a ~1,200-atom
water cluster; model: a ~1.2M-parameter ViSNet (128 channels, 4 layers, lmax 1, random weights:
speed and parity only). For each system: energy / forces / stress parity CUDA vs CPU (float64),
then ms per MD step with our own velocity-Verlet loop (neighbour list every step) and through ASE
(``ViSNetCalculator`` + ``VelocityVerlet``), eager and ``visnet.compile_model``. Anchor: InstaDeep's
JAX ViSNet (mlip) on one H100: 1.6 / 9.0 ms per step (JAX-MD), 7.0 / 24 ms (ASE).

Issue 21 rows: energy + forces of 10k- and 50k-atom periodic water boxes at the PyG-default config
(eager frozen model, i.e. the sliced-edge operator, and ``compile_model``; float32, and float64 at
10k): time and peak device memory; training steps/s at the ``rmd17_ethanol_cpu`` architecture
(batch of 8 ethanols, synthetic targets) eager against ``--model.compile true``'s compiled step.

Usage::

    python scripts/bench_gpu.py                 # CUDA; prints "skipped" and exits 0 without it
    python scripts/bench_gpu.py --dry-run       # CPU, tiny sizes, no compiles, nothing written (tested)
    python scripts/bench_gpu.py --device cpu --quick --no-write   # CPU smoke check with compiles
    python scripts/bench_gpu.py --json bench_gpu.json             # also the raw figures as JSON

The tables replace the bench_gpu section of BENCHMARKS.md (``benchlib.write_section``; ``--no-write``
prints them only). Budget: about 8 minutes on one GPU (compiles are the bulk); ``--no-compile``
skips them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from benchlib import add_output_arguments, command_line, machine, water_cluster, write_section

import visnet

PEPTIDE = "GYDPETGTWG"
CONFIG = dict(hidden_channels=128, num_layers=4, lmax=1, num_rbf=32, cutoff=5.0)
QUICK_CONFIG = dict(hidden_channels=16, num_layers=2, lmax=1, num_rbf=8, cutoff=4.0, num_heads=2)
LARGE_CONFIG = dict(hidden_channels=128, num_layers=6, lmax=1)  # PyG's defaults (issue 21's large systems)
LARGE_CASES = [(9999, "float32"), (49998, "float32"), (9999, "float64")]
QUICK_LARGE_CASES = [(150, "float32"), (300, "float64")]
# rmd17_ethanol_cpu's architecture (configs/rmd17_ethanol_cpu.yaml), batch 8
TRAIN_CONFIG = dict(hidden_channels=64, num_layers=3, num_rbf=32, cutoff=5.0, lmax=2, num_heads=8, max_z=10)


def peptide_atoms():
    """The GYDPETGTWG peptide with hydrogens, one RDKit ETKDG conformer (138 atoms)."""
    from ase import Atoms
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSequence(PEPTIDE))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    return Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()], positions=mol.GetConformer().GetPositions())


def systems(quick: bool) -> dict:
    """name -> ase.Atoms."""
    out = {"peptide": peptide_atoms()}
    out["water"] = water_cluster(60 if quick else 1200)
    return out


def model_for(device: str, dtype: torch.dtype, quick: bool) -> visnet.ViSNet:
    torch.manual_seed(0)
    return visnet.ViSNet(**(QUICK_CONFIG if quick else CONFIG)).to(device=device, dtype=dtype).eval()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def parity(atoms, device: str, quick: bool) -> dict:
    """Max |CUDA − CPU| of energy, forces and stress (float64, a periodic copy for stress)."""
    cpu = model_for("cpu", torch.float64, quick)
    dev = model_for(device, torch.float64, quick)
    z = torch.as_tensor(atoms.numbers)
    pos = torch.as_tensor(atoms.positions, dtype=torch.float64)
    side = float(np.ptp(atoms.positions, axis=0).max()) + 12.0
    cell = torch.eye(3, dtype=torch.float64) * side
    a = cpu(z, pos, cell=cell, compute_stress=True)
    b = dev(z.to(device), pos.to(device), cell=cell.to(device), compute_stress=True)
    return {k: float((a[k] - b[k].cpu()).abs().max().detach()) for k in ("energy", "forces", "stress")}


def own_md_ms(model, atoms, device: str, steps: int) -> float:
    """ms per velocity-Verlet step (1 fs, masses 1 amu-scaled), neighbour list rebuilt each step."""
    z = torch.as_tensor(atoms.numbers, device=device)
    dtype = model.dtype
    pos = torch.as_tensor(atoms.positions, dtype=dtype, device=device)
    vel = torch.zeros_like(pos)
    masses = torch.as_tensor(atoms.get_masses(), dtype=dtype, device=device).unsqueeze(-1)
    dt = 0.1 * 0.09822694788464063  # 1 fs in ASE time units (Å sqrt(amu/eV))
    forces = model(z, pos)["forces"].detach()
    for _ in range(2):  # warm-up
        forces = model(z, pos)["forces"].detach()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        vel = vel + 0.5 * dt * forces / masses
        pos = pos + dt * vel
        forces = model(z, pos)["forces"].detach()
        vel = vel + 0.5 * dt * forces / masses
    sync(device)
    return (time.perf_counter() - start) / steps * 1e3


def ase_md_ms(model, atoms, device: str, steps: int, compile: bool) -> float:
    """ms per ASE VelocityVerlet step through ViSNetCalculator (float32)."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    atoms = atoms.copy()
    accel = "compile" if compile else "eager"
    atoms.calc = visnet.ViSNetCalculator(model=model, device=device, dtype="float32", accel=accel)
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    dyn.run(2)
    sync(device)
    start = time.perf_counter()
    dyn.run(steps)
    sync(device)
    return (time.perf_counter() - start) / steps * 1e3


def peak_memory_gb(device: str) -> float:
    """Peak memory of this process so far: CUDA allocations on a GPU, resident memory on CPU."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 1e9
    from benchlib import peak_gb

    return peak_gb()


def large_rows(device: str, quick: bool, compile: bool) -> list[dict]:
    """E+F of periodic water boxes (PyG-default config; tiny sizes and model with ``quick``), eager
    (frozen: the sliced-edge operator) and compiled: best of 2 calls after the first, peak memory."""
    from benchlib import water_box

    rows = []
    for atoms_n, dtype_name in QUICK_LARGE_CASES if quick else LARGE_CASES:
        atoms, dtype = water_box(atoms_n), getattr(torch, dtype_name)
        torch.manual_seed(0)
        model = visnet.ViSNet(**(QUICK_CONFIG if quick else LARGE_CONFIG)).to(device=device, dtype=dtype).eval()
        model.requires_grad_(False)
        inputs = dict(
            z=torch.as_tensor(atoms.numbers, device=device),
            pos=torch.as_tensor(atoms.positions, dtype=dtype, device=device),
            cell=torch.as_tensor(atoms.cell.array, dtype=dtype, device=device).unsqueeze(0),
            pbc=torch.ones(1, 3, dtype=torch.bool, device=device),
        )
        for form in ("eager", "compiled") if compile else ("eager",):
            fast = visnet.compile_model(model, verbose=False) if form == "compiled" else model
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(3):
                sync(device)
                start = time.perf_counter()
                fast(**inputs)
                sync(device)
                times.append(time.perf_counter() - start)
            row = {"atoms": len(atoms), "dtype": dtype_name, "form": form, "first_s": times[0]}
            row.update(seconds=min(times[1:]), peak_gb=peak_memory_gb(device))
            rows.append(row)
            print(json.dumps({"large": row}), flush=True)
    return rows


def ethanol_batch(device: str, frames: int = 8) -> dict:
    """A batch of ``frames`` randomly displaced ethanols with synthetic energies and forces (float32)."""
    from ase.build import molecule

    ethanol = molecule("CH3CH2OH")
    generator = torch.Generator().manual_seed(0)
    base = torch.as_tensor(ethanol.positions, dtype=torch.float32)
    pos = base + 0.05 * torch.randn(frames, len(ethanol), 3, generator=generator)
    n = len(ethanol)
    batch = {
        "z": torch.as_tensor(ethanol.numbers).repeat(frames),
        "pos": pos.reshape(-1, 3),
        "batch": torch.arange(frames).repeat_interleave(n),
        "forces": torch.randn(frames * n, 3, generator=generator),
        "y": torch.randn(frames, generator=generator),
    }
    return {k: v.to(device) for k, v in batch.items()}


def train_step(lit, optimizer: torch.optim.Optimizer, batch: dict) -> None:
    """One force-training step: loss (as ``ViSNetModule``'s default weights), backward, optimizer step."""
    out = lit(batch, compute_forces=True)
    loss = 0.05 * lit.loss_fn(out["energy"], batch["y"]) + 0.95 * lit.loss_fn(out["forces"], batch["forces"])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def sliced_parity(atoms, device: str, quick: bool) -> dict:
    """``parity`` with every layer's edges through the sliced-edge operator (slices forced small)."""
    from visnet.model import representation

    previous = representation.EDGE_CHUNK_BYTES
    representation.EDGE_CHUNK_BYTES = 1e5
    try:
        return parity(atoms, device, quick)
    finally:
        representation.EDGE_CHUNK_BYTES = previous


def training_rows(device: str, quick: bool, compile: bool, steps: int) -> list[dict]:
    """Optimizer steps/s of force training (loss, backward, AdamW step) eager and compiled; the
    first step (which compiles) is reported apart."""
    from visnet.training.module import ViSNetModule

    batch = ethanol_batch(device)
    rows = []
    for form in ("eager", "compiled") if compile else ("eager",):
        torch.manual_seed(0)
        lit = ViSNetModule(compile=form == "compiled", **(QUICK_CONFIG if quick else TRAIN_CONFIG)).to(device).train()
        optimizer = torch.optim.AdamW(lit.parameters(), lr=1e-4)

        start = time.perf_counter()
        train_step(lit, optimizer, batch)
        sync(device)
        first = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(steps):
            train_step(lit, optimizer, batch)
        sync(device)
        row = {"form": form, "first_step_s": first, "steps_per_s": steps / (time.perf_counter() - start)}
        rows.append(row)
        print(json.dumps({"training": row}), flush=True)
    return rows


def markdown(report: dict, command: str) -> str:
    """The bench_gpu section of BENCHMARKS.md from the run's report."""
    device = report.get("gpu", report["device"])
    lines = [
        f"## GPU: parity with the CPU and MD step times ({device})",
        "",
        f"`{command}` on {time.strftime('%Y-%m-%d')}: {report['machine']}. Model: {report['config']} "
        "(random weights). Parity: max |device − CPU| in float64; MD: float32, ms per step, our own "
        "velocity-Verlet loop (neighbour list every step) and ASE `VelocityVerlet` through `ViSNetCalculator`.",
        "",
        "| system | atoms | ΔE eV | ΔF eV/Å | Δstress | own MD eager | own MD compiled | ASE MD eager | ASE MD compiled |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("peptide", "water"):
        row = report.get(name)
        if row is None:
            continue
        parity = row["parity_max_abs"]
        cells = [f"{row[key]:.2f}" if key in row else "—" for key in ("own_md_ms_eager", "own_md_ms_compiled")]
        cells += [f"{row[key]:.2f}" if key in row else "—" for key in ("ase_md_ms_eager", "ase_md_ms_compiled")]
        lines.append(
            f"| {name} | {row['atoms']:,} | {parity['energy']:.1e} | {parity['forces']:.1e} | "
            f"{parity['stress']:.1e} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "Anchor: InstaDeep's JAX ViSNet (mlip) on one H100: 1.6 / 9.0 ms per step (JAX-MD), 7.0 / 24 ms (ASE).",
    ]
    if report.get("sliced_parity"):
        sliced = report["sliced_parity"]
        lines += [
            "",
            f"Sliced-edge operator (edges in slices forced small), 60-atom water, float64 device − CPU: ΔE "
            f"{sliced['energy']:.1e} eV, ΔF {sliced['forces']:.1e} eV/Å, Δstress {sliced['stress']:.1e}.",
        ]
    if report.get("large"):
        lines += [
            "",
            "Large systems (issue 21): energy + forces of periodic water boxes, PyG-default config; best of 2 "
            "calls after the first; peak = `torch.cuda.max_memory_allocated`.",
            "",
            "| atoms | dtype | form | E+F s | first call s | peak GB |",
            "|---:|---|---|---:|---:|---:|",
        ]
        for row in report["large"]:
            lines.append(
                f"| {row['atoms']:,} | {row['dtype']} | {row['form']} | {row['seconds']:.3f} | "
                f"{row['first_s']:.1f} | {row['peak_gb']:.2f} |"
            )
    if report.get("training"):
        lines += [
            "",
            "Training (issue 21): `rmd17_ethanol_cpu` architecture, batch of 8 ethanols, float32, loss + backward "
            "+ AdamW step.",
            "",
            "| form | steps/s | first step s |",
            "|---|---:|---:|",
        ]
        for row in report["training"]:
            lines.append(f"| {row['form']} | {row['steps_per_s']:.1f} | {row['first_step_s']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run parity and MD timings per system, write the section."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny model, few steps (smoke check)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the raw figures to this JSON file")
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU, tiny sizes, no compiles, nothing written (a check of the script)"
    )
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    if args.dry_run:
        args.device, args.quick, args.no_compile, args.no_write, args.steps = "cpu", True, True, True, 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu: skipped (no CUDA device)")
        return 0
    torch.set_num_threads(1 if args.device == "cpu" else torch.get_num_threads())
    steps = args.steps or (3 if args.quick else 100)
    report = {"device": args.device, "torch": torch.__version__, "config": QUICK_CONFIG if args.quick else CONFIG}
    if args.device.startswith("cuda"):
        report["gpu"] = torch.cuda.get_device_name()
    report["machine"] = machine()
    paths = [False] if args.no_compile else [False, True]
    for name, atoms in systems(args.quick).items():
        row = {"atoms": len(atoms), "parity_max_abs": parity(atoms, args.device, args.quick)}
        for compiled in paths:
            label = "compiled" if compiled else "eager"
            model = model_for(args.device, torch.float32, args.quick)
            fast = visnet.compile_model(model) if compiled else model
            start = time.perf_counter()
            row[f"own_md_ms_{label}"] = own_md_ms(fast, atoms, args.device, steps)
            row[f"wall_s_{label}"] = time.perf_counter() - start
            row[f"ase_md_ms_{label}"] = ase_md_ms(model, atoms, args.device, steps, compiled)
        report[name] = row
        print(json.dumps({name: row}), flush=True)
    report["sliced_parity"] = sliced_parity(systems(True)["water"], args.device, args.quick)
    print(json.dumps({"sliced_parity": report["sliced_parity"]}), flush=True)
    report["large"] = large_rows(args.device, args.quick, not args.no_compile)
    report["training"] = training_rows(args.device, args.quick, not args.no_compile, 3 if args.quick else 50)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    write_section(__file__, markdown(report, command_line(__file__, argv)), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
