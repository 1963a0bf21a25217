"""Batched MD throughput for BENCHMARKS.md: 16 bundled molecules in one TorchSim NVT run against
16 separate ASE Langevin runs with ViSNetCalculator, in molecule-steps per second.

    python scripts/bench_torchsim.py [--steps 50] [--repeats 2] [--threads 1] [--dtype float32]
        [--output BENCHMARKS.md | --no-write]

Both sides use the bundled default model, the same dtype and thread count, Langevin at 300 K with a
0.5 fs step. The results replace the bench_torchsim section of BENCHMARKS.md
(``benchlib.write_section``).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from itertools import cycle, islice

import numpy as np
import torch
import torch_sim as ts
from ase import Atoms, units
from ase.io import read
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta
from benchlib import add_output_arguments, command_line, cpu_name, write_section

from visnet import ViSNetCalculator
from visnet.integrations.torchsim import ViSNetModel
from visnet.structures.molecules import named_structures

TEMPERATURE_K = 300.0
TIMESTEP_FS = 0.5


def sixteen_molecules() -> list[Atoms]:
    """The ten bundled molecules, then the first six again (16 systems, 249 atoms)."""
    paths = list(islice(cycle(named_structures().values()), 16))
    return [read(path) for path in paths]


def ase_throughput(molecules: list[Atoms], steps: int, dtype: str) -> float:
    """Molecule-steps per second of one ASE Langevin run per molecule, one after the other."""
    calc = ViSNetCalculator(device="cpu", dtype=dtype, accel="eager")  # eager in both engines
    runs = []
    for seed, atoms in enumerate(molecules):
        atoms = atoms.copy()
        atoms.calc = calc
        thermalize_momenta(atoms, TEMPERATURE_K, rng=np.random.default_rng(seed))
        dyn = Langevin(
            atoms, TIMESTEP_FS * units.fs, temperature_K=TEMPERATURE_K, friction=0.01 / units.fs, fixcm=False
        )
        dyn.run(2)  # warm-up: first calls build the neighbour list and allocate
        runs.append(dyn)
    start = time.perf_counter()
    for dyn in runs:
        dyn.run(steps)
    return len(molecules) * steps / (time.perf_counter() - start)


def torchsim_throughput(molecules: list[Atoms], steps: int, dtype: str) -> float:
    """Molecule-steps per second of one batched ``torch_sim.integrate`` NVT Langevin call."""
    model = ViSNetModel("default", device="cpu", dtype=dtype, accel="eager")
    torch_dtype = model.dtype
    state = ts.io.atoms_to_state(molecules, torch.device("cpu"), torch_dtype)
    kwargs = {"integrator": ts.nvt_langevin, "temperature": TEMPERATURE_K, "timestep": TIMESTEP_FS / 1000}
    state = ts.integrate(system=state, model=model, n_steps=2, **kwargs)  # warm-up
    start = time.perf_counter()
    final = ts.integrate(system=state, model=model, n_steps=steps, **kwargs)
    elapsed = time.perf_counter() - start
    if not torch.isfinite(final.positions).all():
        raise RuntimeError("the TorchSim run produced non-finite positions")
    return len(molecules) * steps / elapsed


def report(args: argparse.Namespace) -> str:
    """The bench_torchsim section of BENCHMARKS.md."""
    torch.set_num_threads(args.threads)
    molecules = sixteen_molecules()
    atoms = sum(len(m) for m in molecules)
    # Alternate the two and keep each one's best of ``repeats``: other processes on a shared machine
    # slow whichever happens to run while they do.
    batched = separate = 0.0
    for _ in range(args.repeats):
        separate = max(separate, ase_throughput(molecules, args.steps, args.dtype))
        batched = max(batched, torchsim_throughput(molecules, args.steps, args.dtype))
    load = os.getloadavg()[0]
    return "\n".join(
        [
            f"## Batched MD with TorchSim ({args.threads} thread(s), {args.dtype}, Langevin 300 K, 0.5 fs)",
            "",
            f"16 bundled molecules ({atoms} atoms: the ten rMD17 molecules, then the first six again), bundled "
            f"default model, {args.steps} steps after 2 warm-up steps, best of {args.repeats} alternating runs; "
            f"`{command_line(__file__)}`. "
            f"torch-sim-atomistic {_version('torch-sim-atomistic')}, torch {torch.__version__}, "
            f"{platform.machine()} {cpu_name()} ({os.cpu_count()} cores, 1-minute load average {load:.1f} at the end), "
            f"torch threads {torch.get_num_threads()}.",
            "",
            "| engine | molecule-steps/s | speed-up |",
            "|---|---:|---:|",
            f"| 16 ASE `Langevin` runs with `ViSNetCalculator`, one after the other | {separate:.1f} | 1.00 |",
            f"| one `torch_sim.integrate(nvt_langevin)` call on all 16 | {batched:.1f} | {batched / separate:.2f} |",
            "",
            "A molecule-step is one MD step of one molecule; the TorchSim run evaluates all 16 as one graph per step. "
            "On one CPU thread the model's arithmetic grows with the atom count either way, so batching saves only "
            "per-call costs (Python, ASE's integrator, dispatch of many small tensor ops); it should pay most where one "
            "molecule leaves the hardware idle (a GPU), which is not measured here.",
        ]
    )


def _version(distribution: str) -> str:
    from importlib.metadata import version

    return version(distribution)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each engine; best kept")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    add_output_arguments(parser)
    args = parser.parse_args()
    write_section(__file__, report(args), args)


if __name__ == "__main__":
    main()
