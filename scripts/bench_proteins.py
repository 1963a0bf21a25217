"""Scaling of one fragmented (AI2BMD) energy + forces call from ~1,000 to >= 10,000 protein atoms.

A capped 84-residue peptide (RDKit, from sequence) is one chain of ~1,200 atoms; larger proteins
are copies of it as further chains on a grid 40 Å apart. Each size: the median time of an
energy+forces call of ``ViSNetCalculator(fragmentation="ai2bmd")`` split into the ML units and
the Amber Coulomb+LJ term (all pairs, O(N^2)), time per atom, and the process's peak memory.
No floor column: the ML part's floor is the bench_floor of the unit batch (about twice the atoms).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from benchlib import add_output_arguments, command_line, machine, peak_gb, summary, write_section

SEQUENCE = "GYDPETGTWG" * 8 + "AVLS"  # 84 residues, elements H C N O only


def protein(copies: int, base):
    """``copies`` chains of ``base`` on a cubic grid 40 Å apart (chain ids A, B, ...)."""
    import string

    parts = []
    side = int(np.ceil(copies ** (1 / 3)))
    for k in range(copies):
        part = base.copy()
        part.arrays["chainids"][:] = string.ascii_uppercase[k]
        part.positions += 40.0 * np.array([k % side, (k // side) % side, k // side**2]) + [0, 0, 0]
        parts.append(part)
    atoms = parts[0]
    for part in parts[1:]:
        atoms = atoms + part
    return atoms


def time_call(atoms, calc, repeats: int) -> tuple[float, float]:
    """Median seconds of an E+F call, and of its MM part alone."""
    from visnet.proteins.nonbonded import nonbonded

    totals, mm = [], []
    for _ in range(repeats):
        atoms.positions += 1e-4  # a new geometry each call
        t0 = time.perf_counter()
        calc.calculate(atoms, ["energy", "forces"])
        totals.append(time.perf_counter() - t0)
        protein_units = calc.protein_units(atoms)
        t0 = time.perf_counter()
        nonbonded(torch.as_tensor(atoms.positions), *protein_units.mm, protein_units.excluded)
        mm.append(time.perf_counter() - t0)
    return summary(totals)["median"], summary(mm)["median"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    add_output_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from visnet import ViSNetCalculator
    from visnet.proteins.building import peptide_from_sequence

    t0 = time.perf_counter()
    base = peptide_from_sequence(SEQUENCE, seed=0)
    print(f"built {len(base)} atoms in {time.perf_counter() - t0:.0f} s", flush=True)
    rows, per_atom = [], {}
    for copies in args.copies:
        atoms = protein(copies, base)
        calc = ViSNetCalculator(model="default", fragmentation="ai2bmd", dtype=args.dtype)
        calc.calculate(atoms, ["energy", "forces"])  # warm-up: builds the units
        units = calc.protein_units(atoms).units
        total, mm = time_call(atoms, calc, args.repeats)
        per_atom[len(atoms)] = total / len(atoms)
        rows.append(
            f"| {len(atoms):,} | {copies * 84} | {len(units.kind)} | {len(units.z):,} | {total:.2f} | {total - mm:.2f} | "
            f"{mm:.2f} | {1e3 * total / len(atoms):.3f} | {1e3 * (total - mm) / len(atoms):.3f} | {peak_gb():.2f} |"
        )
        print(rows[-1], flush=True)
    sizes = sorted(per_atom)
    ratio = per_atom[sizes[-1]] / per_atom[sizes[0]]
    body = "\n".join(
        [
            "## Proteins: fragmented E+F scaling (AI2BMD units)",
            "",
            f"`{command_line(__file__)}` — {machine()}, 1 thread, bundled `default` model, {args.dtype} units, "
            "Amber14 Coulomb+LJ in float64 (all pairs, no cutoff). Chains of a capped 84-residue peptide 40 Å apart; "
            "median of "
            f"{args.repeats} calls; peak = the process's peak RSS so far.",
            "",
            "| atoms | residues | units | unit atoms | E+F s | ML s | MM s | ms/atom | ML ms/atom | peak GB |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Time per atom at {sizes[-1]:,} atoms / at {sizes[0]:,}: **{ratio:.2f}×** (goal ≤ 1.3×). The ML units "
            "are linear by construction; the MM term is O(N²).",
        ]
    )
    write_section(__file__, body, args)


if __name__ == "__main__":
    main()
