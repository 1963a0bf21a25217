"""Molecular dynamics with ViSNet through ASE: NVE, NVT (Langevin, Bussi, BAOAB) and NPT drivers,
structure input (files, bundled molecules, SMILES), outputs, a blow-up guard, an NVE check,
production temperature statistics and committee uncertainty (harvesting uncertain frames).

``visnet md`` (``visnet.cli.md``) and the scripts in ``md/`` are thin layers over ``run_md``.
"""

from visnet.dynamics.guard import BlowUpGuard, GuardLimits, MDBlowUpError, closest_pair
from visnet.dynamics.integrators import ENSEMBLES, init_velocities, make_integrator, prepare_constraints
from visnet.dynamics.nve import NVEDrift, nve_drift
from visnet.dynamics.runner import MDConfig, MDResult, prepare_system, run_md
from visnet.dynamics.statistics import TemperatureStats, temperature_stats
from visnet.dynamics.uncertainty import UncertainFrameStop, UncertaintyMonitor, max_force_std
from visnet.structures.molecules import atoms_from_smiles, load_structure, named_structures

__all__ = [
    "ENSEMBLES",
    "BlowUpGuard",
    "GuardLimits",
    "MDBlowUpError",
    "MDConfig",
    "MDResult",
    "NVEDrift",
    "TemperatureStats",
    "UncertainFrameStop",
    "UncertaintyMonitor",
    "atoms_from_smiles",
    "closest_pair",
    "init_velocities",
    "load_structure",
    "make_integrator",
    "max_force_std",
    "named_structures",
    "nve_drift",
    "prepare_constraints",
    "prepare_system",
    "run_md",
    "temperature_stats",
]
