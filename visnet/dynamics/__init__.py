"""Molecular dynamics with ViSNet through ASE: NVE, NVT (Langevin, Bussi, BAOAB) and NPT drivers,
structure input (files, bundled molecules, SMILES), outputs, a blow-up guard and an NVE check.

``visnet md`` (``visnet.dynamics.cli``) and the scripts in ``md/`` are thin layers over ``run_md``.
"""

from visnet.dynamics.guard import BlowUpGuard, GuardLimits, MDBlowUpError, closest_pair
from visnet.dynamics.integrators import ENSEMBLES, init_velocities, make_integrator, prepare_constraints
from visnet.dynamics.nve import NVEDrift, nve_drift
from visnet.dynamics.runner import MDConfig, MDResult, prepare_system, run_md
from visnet.molecules import atoms_from_smiles, load_structure, named_structures

__all__ = [
    "ENSEMBLES",
    "BlowUpGuard",
    "GuardLimits",
    "MDBlowUpError",
    "MDConfig",
    "MDResult",
    "NVEDrift",
    "atoms_from_smiles",
    "closest_pair",
    "init_velocities",
    "load_structure",
    "make_integrator",
    "named_structures",
    "nve_drift",
    "prepare_constraints",
    "prepare_system",
    "run_md",
]
