"""GPU benchmark (issue 11): CUDA vs CPU parity and MD step times, eager and compiled.

Systems: a 138-atom peptide (GYDPETGTWG, chignolin-sized, built with RDKit) and a ~1,200-atom
water cluster; model: a ~1.2M-parameter ViSNet (128 channels, 4 layers, lmax 1, random weights:
speed and parity only). For each system: energy / forces / stress parity CUDA vs CPU (float64),
then ms per MD step with our own velocity-Verlet loop (neighbour list every step) and through ASE
(``ViSNetCalculator`` + ``VelocityVerlet``), eager and ``visnet.compile_model``. Anchor: InstaDeep's
JAX ViSNet (mlip) on one H100: 1.6 / 9.0 ms per step (JAX-MD), 7.0 / 24 ms (ASE).

Usage::

    python scripts/bench_gpu.py                 # CUDA; prints "skipped" and exits 0 without it
    python scripts/bench_gpu.py --device cpu --quick --no-write   # CPU smoke check of the whole script
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
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run parity and MD timings per system, write the section."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny model, few steps (smoke check)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the raw figures to this JSON file")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
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
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    write_section(__file__, markdown(report, command_line(__file__, argv)), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
