"""Run by tests/integrations/test_lammps.py under ``mpiexec -n K``: a short NVE run of a periodic
ethanol box (18 x 9 x 9 Å, split along x on 2 ranks) with ViSNetLammps in the given mode; rank 0
writes the potential energy, the forces (by atom ID) and the virial of every step to an npz.

    mpiexec -n 2 python lammps_nve_ranks.py domain out.npz
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from ase.io import read

from visnet.integrations.lammps import ViSNetLammps, load_lammps
from visnet.integrations.lammps_atoms import create_atoms
from visnet.integrations.lammps_box import read_box

STEPS = 10


def ethanol_slab():
    structures = Path(__file__).resolve().parents[2] / "visnet" / "pretrained" / "structures"
    mol = read(structures / "ethanol.xyz")
    rng = np.random.default_rng(1)
    parts = []
    for shift in ([0, 0, 0], [4.5, 4.5, 0], [4.5, 0, 4.5], [0, 4.5, 4.5]):
        for cell_x in (0.0, 9.0):
            m = mol.copy()
            m.rotate(rng.uniform(0, 360), rng.normal(size=3), center="COM")
            m.translate(np.asarray(shift, dtype=float) + [cell_x + 2.25, 2.25, 2.25] - m.get_center_of_mass())
            parts.append(m)
    atoms = sum(parts[1:], parts[0])
    atoms.set_cell([18.0, 9.0, 9.0])
    atoms.pbc = True
    return atoms


def forces_by_id(lmp) -> np.ndarray:
    """(N, 3) forces of all atoms, ordered by atom ID, on every rank (mpi4py allgather)."""
    return by_id(lmp, "f")


def by_id(lmp, name: str) -> np.ndarray:
    """(N, 3) per-atom vectors ``name`` of all atoms, ordered by atom ID, on every rank."""
    nlocal = lmp.extract_global("nlocal")
    ids = lmp.numpy.extract_atom("id", nelem=nlocal).copy()
    forces = lmp.numpy.extract_atom(name, nelem=nlocal, dim=3).copy()
    comm = lmp.get_mpi_comm()
    if comm is not None and comm.Get_size() > 1:
        ids = np.concatenate(comm.allgather(ids))
        forces = np.concatenate(comm.allgather(forces))
    return forces[np.argsort(ids)]


def main(mode: str, out: str) -> None:
    torch.set_num_threads(1)
    lmp = load_lammps().lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    elements = create_atoms(lmp, ethanol_slab())
    visnet = ViSNetLammps(lmp, "default", elements, mode=mode, accel="eager")
    lmp.commands_string(
        "compute visnet_virial all pressure NULL virial\n"
        "thermo_style custom step pe\nthermo 1\ntimestep 0.0005\n"
        "velocity all create 300 4321 mom yes rot no loop geom\nfix nve all nve"
    )
    records = {"energy": [], "forces": [], "virial": [], "positions": []}
    for step in range(STEPS + 1):
        visnet.command("run 0" if step == 0 else "run 1 pre no post no")
        virial = np.array(lmp.numpy.extract_compute("visnet_virial", 0, 1))
        records["energy"].append(lmp.get_thermo("pe"))
        records["forces"].append(forces_by_id(lmp))
        records["positions"].append(by_id(lmp, "x"))
        records["virial"].append(virial * read_box(lmp).volume / lmp.extract_global("nktv2p"))
    if lmp.extract_setting("world_rank") == 0:
        ranks = lmp.extract_setting("world_size")
        np.savez(out, ranks=ranks, mode=visnet.mode, **{k: np.array(v) for k, v in records.items()})
    lmp.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
