"""The kinetic temperature an integrator samples correctly.

BAOAB (Leimkuhler & Matthews, J. Chem. Phys. 138, 174102 (2013)) samples positions to O(h²) with a
tiny constant and, for harmonic modes, exactly; but its full-step velocities are biased: a mode of
angular frequency ω has ⟨m v²⟩ = k_B T (1 − h²ω²/4) at the end of a step. For a molecule with X–H
stretches (ω ≈ 0.6–0.7 fs⁻¹) at 1 fs that is 8–12 % per stretch and ~3 % for ethanol's mean, which is
why ``atoms.get_temperature()`` reads cold under ASE's ``LangevinBAOAB``. The velocities right
after the O (Ornstein–Uhlenbeck) half of the step are canonical instead (exactly for harmonic
modes), and they follow from the full-step state: the step ends with ``v ← v_O + (h/2) F(x)/m``, so
``v_O = v − (h/2) F/m`` with the forces the integrator used (constraint-projected, as
``atoms.get_forces()`` returns them). Other integrators are read as ``atoms.get_temperature()``.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms, units
from ase.md.langevinbaoab import LangevinBAOAB
from ase.md.md import MolecularDynamics

from visnet.dynamics.statistics import degrees_of_freedom

__all__ = ["kinetic_temperature", "midstep_velocities", "samples_midstep"]


def samples_midstep(dyn: MolecularDynamics) -> bool:
    """True for integrators whose canonical velocities are the mid-step ones (BAOAB at constant cell)."""
    return isinstance(dyn, LangevinBAOAB) and dyn.externalstress is None


def midstep_velocities(atoms: Atoms, timestep: float) -> np.ndarray:
    """(N, 3) velocities after BAOAB's O step, Å per ASE time unit: v − (h/2) F/m.

    Args:
        atoms: the state at the end of a step (velocities and the forces at these positions).
        timestep: h, ASE time units.
    """
    accel = atoms.get_forces() / atoms.get_masses()[:, None]
    return atoms.get_velocities() - 0.5 * timestep * accel


def kinetic_temperature(atoms: Atoms, dyn: MolecularDynamics) -> float:
    """Instantaneous kinetic temperature, K, from the velocities ``dyn`` samples canonically.

    Degrees of freedom are counted as ``atoms.get_temperature()`` counts them (3N minus what the
    constraints remove), so for integrators other than BAOAB the two are equal.
    """
    if not samples_midstep(dyn):
        return float(atoms.get_temperature())
    velocities = midstep_velocities(atoms, dyn.dt)
    kinetic = 0.5 * float(np.sum(atoms.get_masses()[:, None] * velocities**2))
    return 2.0 * kinetic / (degrees_of_freedom(atoms) * units.kB)
