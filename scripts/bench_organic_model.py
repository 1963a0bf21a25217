"""Measure the general organic model against GFN2-xTB and in MD; write its BENCHMARKS.md section.

- Held-out QM9 molecules (not in the training set, B3LYP geometry displaced by 0.05 Å, labelled
  with GFN2-xTB by ``scripts/build_organic_dataset.py``): force MAE (meV/Å) and energy MAE
  (meV/atom).
- MD stability: 10 ps of 500 K Langevin MD (0.5 fs) for one molecule of each chemistry class of
  the training set; stable = the run completes (no blow-up) and the covalent bond graph at the
  end equals the one at the start (no bond broken or formed).
- The ten rMD17 molecules: frames of the shared 500 K xTB MD sets that neither this model's
  training set nor the previous bundled model's used, force MAE of both models (``--baseline``).
- Speed: aspirin MD steps/s of this model beside another (``--baseline``, e.g. the previous
  bundled model), interleaved in the same process.

    python scripts/bench_organic_model.py --model runs/organic_model/model.pt \\
        --test runs/organic/test_qm9.extxyz --baseline /tmp/old_default.pt
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read
from ase.neighborlist import natural_cutoffs, neighbor_list
from benchlib import add_output_arguments, command_line, machine, write_section
from build_organic_dataset import FRAMES_PER_MOLECULE, KCAL_PER_MOL, TEN_MOLECULES, XTB_MD

from visnet.dynamics.runner import MDConfig, run_md
from visnet.inference.calculator import ViSNetCalculator
from visnet.structures.molecules import load_structure

REPO = Path(__file__).resolve().parents[1]
# One molecule per chemistry class of the training set (name or SMILES; see build_organic_dataset.py).
MD_CLASSES = {
    "QM9-like (C7H10O2)": "CC1(O)CC2CC1C2=O",
    "drug-like (aspirin)": "aspirin",
    "capped amino acid (ACE-ALA-NME)": "CC(=O)N[C@@H](C)C(=O)NC",
    "capped dipeptide, charged (ACE-KD-NME)": "CC(=O)N[C@@H](CCCC[NH3+])C(=O)N[C@@H](CC(=O)[O-])C(=O)NC",
    "sulfur (methionine dipeptide)": "CC(=O)N[C@@H](CCSC)C(=O)NC",
    "sulfur heterocycle (benzothiazole)": "c1ccc2scnc2c1",
    "fluorine (trifluoromethylbenzene)": "FC(F)(F)c1ccccc1",
}
PREVIOUS_DEFAULT_FRAMES = 400  # strided frames per molecule the ten-molecule model trained on


def held_out_md_frames(name: str, count: int) -> list[Atoms]:
    """``count`` frames of one shared xTB MD set that neither training set used, in eV and eV/Å."""
    with np.load(XTB_MD / f"{name}_gfn2xtb_500K.npz") as npz:
        z, positions, energies, forces = npz["z"], npz["R"], np.ravel(npz["E"]), npz["F"]
    n = len(positions)
    used = {int(i) for k in (FRAMES_PER_MOLECULE, PREVIOUS_DEFAULT_FRAMES) for i in np.linspace(0, n - 1, k).round()}
    free = np.array([i for i in range(n) if i not in used])
    frames = []
    for i in free[np.linspace(0, len(free) - 1, count).round().astype(int)]:
        atoms = Atoms(numbers=z, positions=positions[i])
        atoms.calc = SinglePointCalculator(
            atoms, energy=float(energies[i]) * KCAL_PER_MOL, forces=forces[i] * KCAL_PER_MOL
        )
        frames.append(atoms)
    return frames


def test_errors(model: str, path: Path | list[Atoms], dtype: str) -> dict[str, float]:
    """Force MAE (meV/Å) and energy MAE (meV/atom) of ``model`` on labelled frames (a file or a list)."""
    frames = read(path, ":") if isinstance(path, Path) else path
    calc = ViSNetCalculator(model=model, dtype=dtype)
    force_err, energy_err, atoms_count = [], [], []
    for atoms in frames:
        ref_e, ref_f = atoms.get_potential_energy(), atoms.get_forces()
        probe = Atoms(numbers=atoms.numbers, positions=atoms.positions)
        probe.calc = calc
        energy_err.append(abs(probe.get_potential_energy() - ref_e) / len(atoms))
        force_err.append(np.abs(probe.get_forces() - ref_f).ravel())
        atoms_count.append(len(atoms))
    return {
        "structures": len(frames),
        "force_mae_meV_A": 1000 * float(np.mean(np.concatenate(force_err))),
        "energy_mae_meV_atom": 1000 * float(np.mean(energy_err)),
    }


def bonds(atoms: Atoms) -> set[tuple[int, int]]:
    """Covalent bonds (ASE natural cutoffs × 1.2) as sorted index pairs."""
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=1.2))
    return {(int(a), int(b)) for a, b in zip(i, j) if a < b}


def md_stability(model: str, structure: str, ps: float, out: Path) -> dict[str, object]:
    """Run ``ps`` ps of 500 K Langevin MD; stable when it completes with the start's bond graph."""
    atoms = load_structure(structure)
    start = bonds(atoms)
    steps = int(round(ps * 1000 / 0.5))
    config = MDConfig(
        structure=structure,
        ensemble="langevin",
        temperature=500.0,
        timestep=0.5,
        steps=steps,
        friction=10.0,
        model=model,
        dtype="float32",
        output_dir=out,
        progress=False,
        plots=False,
        log_interval=200,
        traj_interval=200,
    )
    result = run_md(config, atoms=atoms)
    end = bonds(result.atoms)
    changed = sorted(start ^ end)
    stable = result.completed and not changed
    note = result.message or (f"bonds changed: {changed[:4]}" if changed else "")
    return {"atoms": len(atoms), "ps": result.steps_done * 0.5 / 1000, "stable": stable, "note": note}


def md_speed(model: str, steps: int = 400) -> float:
    """Aspirin NVT steps/s (float32, 1 thread, eager: both models in the same form, whatever the
    fast-path cache holds), after 50 warm-up steps."""
    with tempfile.TemporaryDirectory() as tmp:
        config = MDConfig(
            structure="aspirin",
            steps=steps,
            equilibration_steps=50,
            model=model,
            dtype="float32",
            accel="eager",
            output_dir=Path(tmp),
            progress=False,
            plots=False,
            log_interval=100,
            traj_interval=100,
        )
        result = run_md(config)
    return result.steps_done / result.wall_time


def ten_molecule_table(model: str, baseline: str | None, count: int) -> list[str]:
    """Markdown rows: force MAE on held-out frames of each of the ten molecules, model vs baseline."""
    names = [model, *([baseline] if baseline else [])]
    lines = [
        f"Ten rMD17 molecules, {count} frames each of the shared 500 K GFN2-xTB MD sets used by neither "
        "training set: force MAE (meV/Å), float64.",
        "",
        "| molecule | " + " | ".join(f"`{name}`" for name in names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for molecule in TEN_MOLECULES:
        frames = held_out_md_frames(molecule, count)
        values = [test_errors(name, frames, "float64")["force_mae_meV_A"] for name in names]
        print(molecule, values)
        lines.append(f"| {molecule} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--test", type=Path, default=REPO / "runs" / "organic" / "test_qm9.extxyz")
    parser.add_argument("--baseline", default=None, help="a second model (ten-molecule and speed rows)")
    parser.add_argument("--md-ps", type=float, default=10.0)
    parser.add_argument("--skip-md", action="store_true")
    parser.add_argument("--ten-frames", type=int, default=50, help="held-out frames per rMD17 molecule")
    add_output_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)

    lines = ["## General organic model against GFN2-xTB", "", f"`{command_line(__file__)}`", ""]
    lines += [f"Model: `{args.model}`. {machine()}", ""]
    errors = test_errors(args.model, args.test, "float64")
    print(errors)
    lines += [
        "| held-out set | structures | force MAE (meV/Å) | energy MAE (meV/atom) |",
        "|---|---|---|---|",
        f"| QM9 molecules not in training, displaced 0.05 Å (GFN2-xTB) | {errors['structures']} "
        f"| {errors['force_mae_meV_A']:.1f} | {errors['energy_mae_meV_atom']:.2f} |",
        "",
    ]
    lines += ten_molecule_table(args.model, args.baseline, args.ten_frames)
    if not args.skip_md:
        lines += [f"MD stability, {args.md_ps:g} ps of 500 K Langevin MD (0.5 fs, float32):", ""]
        lines += ["| class | molecule | atoms | ps run | stable | note |", "|---|---|---|---|---|---|"]
        with tempfile.TemporaryDirectory() as tmp:
            for label, structure in MD_CLASSES.items():
                row = md_stability(args.model, structure, args.md_ps, Path(tmp))
                print(label, row)
                lines.append(
                    f"| {label} | `{structure}` | {row['atoms']} | {row['ps']:.1f} | {'yes' if row['stable'] else 'NO'} | {row['note']} |"
                )
        lines.append("")
    speeds = {args.model: md_speed(args.model)}
    if args.baseline:
        speeds[args.baseline] = md_speed(args.baseline)
    lines += ["| model | aspirin MD steps/s (float32, 1 thread, eager) |", "|---|---|"]
    lines += [f"| `{name}` | {value:.1f} |" for name, value in speeds.items()]
    print("\n".join(lines))
    write_section(__file__, "\n".join(lines), args, echo=False)


if __name__ == "__main__":
    main()
