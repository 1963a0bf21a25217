"""Scaling of one fragmented (AI2BMD) energy + forces call from ~1,000 to >= 10,000 protein atoms.

The protein: copies of chignolin (GYDPETGTWG, ACE/NME caps, 149 atoms, built once from its sequence
with RDKit) as separate chains on a cubic grid, each copy's box its extent plus a 4 Å gap. RDKit's
embedding of one 80+-residue chain takes minutes and its random-coil shape is not a protein's
either; copies cost nothing, every chain gets the same units (so time per atom compares like with
like), and neighbouring chains sit inside the 12 Å cutoff of each other's Amber term.

Each size, timed round-robin (``benchlib.time_interleaved``): the ``ViSNetCalculator(fragmentation=
"ai2bmd")`` E+F call; its floor, one model call (energy + forces) on the same batch of units (the
ML work that cannot be avoided); the Amber term alone (shifted force, 12 Å, neighbour list). Then
once: the exact all-pairs Amber term (AI2BMD's, O(N^2)) for comparison. Peak = the process's peak
RSS so far (sizes run in increasing order).
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch
from benchlib import add_output_arguments, command_line, machine, peak_gb, summary, time_interleaved, write_section

SEQUENCE = "GYDPETGTWG"  # chignolin
GAP = 4.0  # Å between the boxes of neighbouring copies


def protein(copies: int, base):
    """``copies`` chains of ``base`` on a cubic grid (chain ids "0", "1", ...)."""
    spacing = np.ptp(base.positions, axis=0) + GAP
    side = int(np.ceil(copies ** (1 / 3) - 1e-9))
    parts = []
    for k in range(copies):
        part = base.copy()
        del part.arrays["chainids"]  # set_array would keep the old one-character dtype
        part.set_array("chainids", np.full(len(part), str(k), dtype="U8"))
        part.positions += spacing * np.array([k % side, (k // side) % side, k // side**2])
        parts.append(part)
    atoms = parts[0]
    for part in parts[1:]:
        atoms += part
    return atoms


def measure(atoms, dtype: str, calls: int, budget_s: float) -> dict:
    """Median seconds of the E+F call, its floor and its MM part; exact MM once; sizes."""
    from visnet import ViSNetCalculator

    calc = ViSNetCalculator(model="default", fragmentation="ai2bmd", dtype=dtype, accel="eager")
    calc.calculate(atoms, ["energy", "forces"])  # builds the units
    protein_units = calc.protein_units(atoms)
    units, model = protein_units.units, calc.model
    pos = torch.as_tensor(atoms.positions)
    z, batch = torch.as_tensor(units.z), torch.as_tensor(units.batch)
    unit_pos = protein_units.unit_positions(pos).to(calc.dtype)

    def call() -> None:
        atoms.positions += 1e-4  # a new geometry each call: no cached result
        calc.calculate(atoms, ["energy", "forces"])

    times = time_interleaved(
        {
            "total": call,
            "floor": lambda: model(z, unit_pos, batch, compute_forces=True),
            "mm": lambda: protein_units.nonbonded_terms(pos),
        },
        calls,
        budget_s,
        warmup=1,
        min_calls=2,
    )
    exact = dataclasses.replace(protein_units, cutoff=None)
    exact_times = time_interleaved({"exact": lambda: exact.nonbonded_terms(pos)}, 1, warmup=0, min_calls=1)
    out = {k: summary(v)["median_ms"] / 1e3 for k, v in times.items()}
    out["exact_mm"] = exact_times["exact"][0]
    out.update(atoms=len(atoms), units=len(units.kind), unit_atoms=len(units.z))
    out["pairs"] = len(protein_units.mm_pairs(pos))
    out["peak_gb"] = peak_gb()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, nargs="+", default=[7, 14, 34, 68])
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per function and size")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    add_output_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from visnet.proteins.building import peptide_from_sequence

    base = peptide_from_sequence(SEQUENCE, seed=0)
    rows, per_atom, floor_per_atom = [], {}, {}
    for copies in sorted(args.copies):
        m = measure(protein(copies, base), args.dtype, args.calls, args.budget)
        per_atom[m["atoms"]] = m["total"] / m["atoms"]
        floor_per_atom[m["atoms"]] = m["floor"] / m["atoms"]
        rows.append(
            f"| {m['atoms']:,} | {copies} | {m['units']:,} | {m['unit_atoms']:,} | {m['total']:.2f} | "
            f"{m['floor']:.2f} | {m['total'] / m['floor']:.2f} | {m['mm']:.3f} | {m['pairs'] / m['atoms']:.0f} | "
            f"{m['exact_mm']:.2f} | {1e3 * m['total'] / m['atoms']:.3f} | {m['peak_gb']:.2f} |"
        )
        print(rows[-1], flush=True)
    sizes = sorted(per_atom)
    ratio = per_atom[sizes[-1]] / per_atom[sizes[0]]
    floor_ratio = floor_per_atom[sizes[-1]] / floor_per_atom[sizes[0]]
    body = "\n".join(
        [
            "## Proteins: fragmented E+F scaling (AI2BMD units, issue 23)",
            "",
            f"`{command_line(__file__)}` — {machine()}, bundled `default` model (eager), {args.dtype} units, "
            "Amber14 term in float64. Copies of chignolin (149 atoms, RDKit from its sequence) as chains on a "
            f"grid, {GAP:g} Å between their boxes; medians of up to {args.calls} interleaved calls.",
            "",
            "E+F: the calculator's call. Floor: one model call (energy + forces) on the same batch of units. "
            "MM: the Amber Coulomb + LJ term with the 12 Å shifted-force cutoff (neighbour search included), "
            "pairs/atom its pairs; exact MM: the all-pairs sum without cutoff (AI2BMD's form), once. "
            "Peak: the process's peak RSS so far.",
            "",
            "| atoms | chains | units | unit atoms | E+F s | floor s | ratio | MM s | MM pairs/atom | exact MM s "
            "| ms/atom | peak GB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Time per atom at {sizes[-1]:,} atoms / at {sizes[0]:,}: **{ratio:.2f}×** (goal ≤ 1.3×; "
            f"memory goal ≤ 4 GB). The model call alone on the same units grows {floor_ratio:.2f}× per atom: the "
            "growth is the model's on a larger batch, not the fragmentation's (units, caps, chain rule, MM).",
        ]
    )
    write_section(__file__, body, args)


if __name__ == "__main__":
    main()
