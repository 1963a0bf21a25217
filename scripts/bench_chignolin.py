"""Blind accuracy test on chignolin (GYDPETGTWG, capped ACE ... NME, 149 atoms) against GFN2-xTB.

Frames: ``--frames`` conformers embedded from the sequence (RDKit ETKDG, one seed each, MMFF94
minimised) with Gaussian displacements (``--sigma`` Å per component, thermal-like forces).
Labels: GFN2-xTB (tblite, neutral singlet), cached in ``--labels`` (npz, written atomically, so a
second run only evaluates). Reported for the fragmented model (AI2BMD units with and without the
Amber14 non-bonded term) and the whole-molecule model: force MAE (meV/Å) against xTB, and the MAE
of relative conformer energies (each set's energies minus its mean, meV). Nothing is tuned on
these frames: the model never saw chignolin (no peptide longer than three residues in training).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from benchlib import add_output_arguments, command_line, machine, write_section

SEQUENCE = "GYDPETGTWG"


def frames(count: int, sigma: float, seed: int):
    """``count`` chignolin structures (same atom order), Å."""
    from visnet.proteins.building import peptide_from_sequence

    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        atoms = peptide_from_sequence(SEQUENCE, seed=seed + k, relax=True)
        atoms.positions += rng.normal(0.0, sigma, atoms.positions.shape)
        out.append(atoms)
    return out


def xtb_labels(structures, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """GFN2-xTB energies (F,) eV and forces (F, N, 3) eV/Å, read from ``path`` when it matches."""
    from tblite.ase import TBLite

    from visnet.files.atomic import atomic_open

    positions = np.stack([a.positions for a in structures])
    if path.exists():
        cached = np.load(path)
        if cached["R"].shape == positions.shape and np.allclose(cached["R"], positions):
            return cached["E"], cached["F"]
    energies, forces = [], []
    for k, atoms in enumerate(structures):
        atoms = atoms.copy()
        atoms.calc = TBLite(method="GFN2-xTB", charge=0, multiplicity=1, verbosity=0)
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces())
        print(f"xTB frame {k + 1}/{len(structures)}: {energies[-1]:.4f} eV", flush=True)
    with atomic_open(path, "wb") as handle:
        np.savez(handle, R=positions, E=np.array(energies), F=np.array(forces))
    return np.array(energies), np.array(forces)


def predictions(structures, model: str, **options) -> tuple[np.ndarray, np.ndarray]:
    from visnet import ViSNetCalculator

    calc = ViSNetCalculator(model=model, **options)
    energies, forces = [], []
    for atoms in structures:
        atoms = atoms.copy()
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces())
    return np.array(energies), np.array(forces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default", help="model spec (the general organic model once trained)")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--sigma", type=float, default=0.05, help="Gaussian displacement per component, Å")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labels", type=Path, default=Path("runs/chignolin_xtb_labels.npz"))
    add_output_arguments(parser)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    structures = frames(args.frames, args.sigma, args.seed)
    args.labels.parent.mkdir(parents=True, exist_ok=True)
    e_ref, f_ref = xtb_labels(structures, args.labels)
    cases = {
        # all pairs, as AI2BMD (chignolin is small; the 12 Å default is for large proteins)
        "fragmented (ai2bmd + Amber14 non-bonded)": dict(
            fragmentation="ai2bmd", nonbonded="amber14", nonbonded_cutoff=None
        ),
        "fragmented (ai2bmd, units only)": dict(fragmentation="ai2bmd", nonbonded=None),
        "whole molecule": {},
    }
    rows = []
    for name, options in cases.items():
        energies, forces = predictions(structures, args.model, **options)
        force_mae = 1e3 * np.abs(forces - f_ref).mean()
        relative = (energies - energies.mean()) - (e_ref - e_ref.mean())
        rows.append(
            f"| {name} | {force_mae:.0f} | {1e3 * np.abs(relative).mean():.0f} | {1e3 * np.abs(relative).max():.0f} |"
        )
        print(rows[-1], flush=True)
    body = "\n".join(
        [
            "## Proteins: chignolin blind test against GFN2-xTB",
            "",
            f"`{command_line(__file__)}` — {machine()}, 1 thread, model `{args.model}`, float64. "
            f"{args.frames} conformers of capped chignolin (149 atoms; RDKit ETKDG + MMFF94, then Gaussian "
            f"displacements σ = {args.sigma} Å), labelled by GFN2-xTB (tblite). xTB force scale: mean |F| = "
            f"{1e3 * np.abs(f_ref).mean():.0f} meV/Å; conformer energy spread (std) {1e3 * e_ref.std():.0f} meV.",
            "",
            "| evaluation | force MAE meV/Å | relative energy MAE meV | max meV |",
            "|---|---|---|---|",
            *rows,
            "",
            "Goal: fragmented force MAE ≤ 100 meV/Å and at least as accurate as the whole-molecule evaluation.",
        ]
    )
    write_section(__file__, body, args)


if __name__ == "__main__":
    main()
