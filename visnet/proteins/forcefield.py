"""Amber14 non-bonded parameters (charges, Lennard-Jones sigma and epsilon) of a protein, from
OpenMM's ``amber14-all.xml``, stored as per-atom arrays of ``ase.Atoms``."""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms

__all__ = ["MM_ARRAYS", "amber_parameters", "attach_amber_parameters", "has_amber_parameters"]

MM_ARRAYS = ("mm_charges", "mm_sigmas", "mm_epsilons")  # e, Å, eV
KJ_PER_MOL_IN_EV = 1.0 / 96.48533212331002
FORCE_FIELD = "amber14-all.xml"


def amber_parameters(topology: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Amber14 (ff14SB) non-bonded parameters of every atom of an OpenMM topology.

    Args:
        topology: ``openmm.app.Topology`` with bonds (all hydrogens present).

    Returns:
        charges (N,) e, sigmas (N,) Å, epsilons (N,) eV.

    Raises:
        ValueError: a residue that matches no Amber14 template (OpenMM's message names it).
    """
    import openmm.app as app
    from openmm import NonbondedForce

    try:
        system = app.ForceField(FORCE_FIELD).createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=None)
    except ValueError as err:
        raise ValueError(f"no Amber14 parameters: {str(err).splitlines()[0]}") from None
    force = next(f for f in system.getForces() if isinstance(f, NonbondedForce))
    params = np.array(
        [
            [q._value, s._value, e._value]
            for q, s, e in map(force.getParticleParameters, range(system.getNumParticles()))
        ]
    )
    return params[:, 0], params[:, 1] * 10.0, params[:, 2] * KJ_PER_MOL_IN_EV


def attach_amber_parameters(atoms: Atoms, topology: Any) -> None:
    """Store ``amber_parameters(topology)`` on ``atoms`` as arrays ``MM_ARRAYS`` (same atom order)."""
    for name, values in zip(MM_ARRAYS, amber_parameters(topology)):
        atoms.set_array(name, values)


def has_amber_parameters(atoms: Atoms) -> bool:
    """Whether ``atoms`` carries the arrays of ``attach_amber_parameters``."""
    return all(name in atoms.arrays for name in MM_ARRAYS)
