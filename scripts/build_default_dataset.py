"""Build the training set of the bundled default model from the shared GFN2-xTB data.

All ten rMD17 molecules at one level of theory (GFN2-xTB, 500 K Langevin MD, see
../shared/data/README.md), ``--frames`` frames each (evenly strided through each trajectory),
written as one extended-XYZ file in eV and eV/Å. The file is derived data: it goes under ``runs/``
and is never committed.

    python scripts/build_default_dataset.py --frames 400 --output runs/default_model/xtb_10mol.extxyz
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

REPO = Path(__file__).resolve().parents[1]
XTB_DIR = REPO.parent / "shared" / "data" / "xtb"
MOLECULES = (
    "aspirin",
    "azobenzene",
    "benzene",
    "ethanol",
    "malonaldehyde",
    "naphthalene",
    "paracetamol",
    "salicylic_acid",
    "toluene",
    "uracil",
)
KCAL_PER_MOL = units.kcal / units.mol  # eV


def frames_of(name: str, count: int) -> list[Atoms]:
    """``count`` evenly strided frames of one molecule's xTB set, energies/forces in eV, eV/Å."""
    path = XTB_DIR / f"{name}_gfn2xtb_500K.npz"
    data = np.load(path)
    if str(data["e_unit"]) != "kcal/mol":
        raise ValueError(f"{path}: expected energies in kcal/mol, found {data['e_unit']}")
    picks = np.linspace(0, len(data["R"]) - 1, count).round().astype(int)
    frames = []
    for i in picks:
        atoms = Atoms(numbers=data["z"], positions=data["R"][i])
        energy = float(np.ravel(data["E"])[i]) * KCAL_PER_MOL
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=data["F"][i] * KCAL_PER_MOL)
        atoms.info["molecule"] = name
        frames.append(atoms)
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=400, help="frames per molecule")
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "default_model" / "xtb_10mol.extxyz")
    args = parser.parse_args()
    frames = [atoms for name in MOLECULES for atoms in frames_of(name, args.frames)]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(f".{args.output.name}.tmp")
    write(tmp, frames, format="extxyz")
    os.replace(tmp, args.output)
    print(f"wrote {len(frames)} frames of {len(MOLECULES)} molecules to {args.output}")


if __name__ == "__main__":
    main()
