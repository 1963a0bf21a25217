"""Drive LAMMPS from Python with a ViSNet potential: a periodic box of ethanol, NVE at 300 K.

    python examples/lammps/driver.py                       # one rank, writes ethanol.data
    mpiexec -n 2 python examples/lammps/driver.py          # two ranks (the venv's mpiexec)

The box (8 ethanol molecules, 18 x 9 x 9 Å) is built with ASE and handed to LAMMPS with
``visnet.integrations.lammps_atoms.create_atoms``; ``ViSNetLammps`` then defines the potential
(zero pair style + fix external). The data file it writes is the input of ``in.ethanol.lmp``
(``visnet lammps examples/lammps/in.ethanol.lmp``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase.build import molecule

from visnet.integrations.lammps import ViSNetLammps, load_lammps
from visnet.integrations.lammps_atoms import create_atoms

HERE = Path(__file__).resolve().parent


def ethanol_box(seed: int = 0):
    """8 randomly oriented ethanol molecules on a 2 x 1 x 1 grid of 9 Å cells (4 per cell)."""
    rng = np.random.default_rng(seed)
    parts = []
    for cell_x in (0.0, 9.0):
        for shift in ([0, 0, 0], [4.5, 4.5, 0], [4.5, 0, 4.5], [0, 4.5, 4.5]):
            mol = molecule("CH3CH2OH")
            mol.rotate(rng.uniform(0, 360), rng.normal(size=3), center="COM")
            mol.translate(np.add(shift, [cell_x + 2.25, 2.25, 2.25]) - mol.get_center_of_mass())
            parts.append(mol)
    atoms = sum(parts[1:], parts[0])
    atoms.set_cell([18.0, 9.0, 9.0])
    atoms.pbc = True
    return atoms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="model file or bundled name")
    parser.add_argument("--mode", default="auto", choices=("auto", "gather", "domain"))
    parser.add_argument("--steps", type=int, default=100, help="NVE steps of 0.5 fs")
    args = parser.parse_args()

    lmp = load_lammps().lammps(cmdargs=["-log", "none", "-nocite"])
    elements = create_atoms(lmp, ethanol_box())  # units metal, box, types (one per element), atoms
    visnet = ViSNetLammps(lmp, args.model, elements, mode=args.mode)
    lmp.commands_string(
        f"""
        write_data {HERE / "ethanol.data"} nocoeff
        velocity all create 300 4321 mom yes rot no loop geom
        fix nve all nve
        timestep 0.0005
        thermo_style custom step temp pe etotal press
        thermo 10
        """
    )
    visnet.command(f"run {args.steps}")  # raises the model's own message if it fails


if __name__ == "__main__":
    main()
