"""ASE integrators for the MD drivers, with the set-up each one needs.

Ensembles:
    nve       VelocityVerlet.
    langevin  Langevin with ``fixcm=False`` plus a ``FixCom`` constraint (ASE's default
              ``fixcm=True`` overheats small molecules).
    bussi     Bussi stochastic velocity rescaling.
    baoab     LangevinBAOAB at constant volume.
    npt       IsotropicMTKNPT (Nosé–Hoover chains + MTK barostat); 3D-periodic systems only.

All but ``npt`` (whose ASE implementation refuses constraints) run with ``FixCom`` so the centre
of mass stays put and ``atoms.get_temperature()`` counts 3N − 3 degrees of freedom.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms, units
from ase.constraints import FixCom
from ase.md.bussi import Bussi
from ase.md.langevin import Langevin
from ase.md.langevinbaoab import LangevinBAOAB
from ase.md.md import MolecularDynamics
from ase.md.nose_hoover_chain import IsotropicMTKNPT
from ase.md.velocitydistribution import Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet

from visnet.units import PICOSECOND

try:  # ASE >= 3.29; MaxwellBoltzmannDistribution, which calls it, is deprecated there
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # ASE < 3.29
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    def thermalize_momenta(atoms: Atoms, temperature_K: float, *, rng: np.random.Generator) -> None:  # noqa: N803
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)


__all__ = ["ENSEMBLES", "check_ensemble", "make_integrator", "init_velocities", "prepare_constraints"]

ENSEMBLES = ("nve", "langevin", "bussi", "baoab", "npt")
_PS = PICOSECOND  # one picosecond in ASE time units


def check_ensemble(atoms: Atoms, ensemble: str, temperature: float) -> None:
    """Raise ValueError for an unknown ensemble, NPT without a 3D cell, or a bad temperature."""
    if ensemble not in ENSEMBLES:
        raise ValueError(f"unknown ensemble {ensemble!r}; choose one of {', '.join(ENSEMBLES)}")
    if ensemble == "npt" and not atoms.pbc.all():
        raise ValueError(f"NPT needs a 3D-periodic system with a cell; this one has pbc={atoms.pbc.tolist()}")
    if not (np.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 K, got {temperature}")
    if ensemble in ("bussi", "npt") and temperature == 0:
        raise ValueError(f"{ensemble} needs a temperature above 0 K")


def init_velocities(atoms: Atoms, temperature: float, seed: int) -> None:
    """Maxwell–Boltzmann momenta at ``temperature`` (K) from a seeded generator, with zero total
    momentum (and zero angular momentum for non-periodic systems)."""
    if temperature <= 0:
        atoms.set_momenta(np.zeros((len(atoms), 3)), apply_constraint=False)
        return
    thermalize_momenta(atoms, temperature, rng=np.random.default_rng(seed))
    Stationary(atoms)
    if not atoms.pbc.any() and len(atoms) > 2:
        ZeroRotation(atoms)


def prepare_constraints(atoms: Atoms, ensemble: str) -> None:
    """Attach ``FixCom`` (kept alongside constraints already on ``atoms``), except for NPT."""
    if ensemble != "npt" and not any(isinstance(c, FixCom) for c in atoms.constraints):
        atoms.set_constraint([*atoms.constraints, FixCom()])


def make_integrator(
    atoms: Atoms, ensemble: str, timestep: float, temperature: float, friction: float, seed: int, pressure: float = 1.0
) -> MolecularDynamics:
    """An ASE integrator for ``ensemble``.

    Args:
        atoms: the system, with calculator, momenta and constraints already set.
        ensemble: one of ``ENSEMBLES``.
        timestep: fs.
        temperature: target temperature, K (thermostats).
        friction: 1/ps; Langevin friction, and 1/friction is the Bussi and BAOAB time constant.
            NPT uses ASE's suggested damping times (100 and 1000 time steps).
        seed: seed of the thermostat's random numbers.
        pressure: bar (NPT).

    Returns:
        The integrator (not yet run).
    """
    if not (timestep > 0 and friction > 0):
        raise ValueError(f"timestep and friction must be positive, got {timestep} fs and {friction} 1/ps")
    dt, rng = timestep * units.fs, np.random.default_rng(seed + 1)
    if ensemble == "nve":
        return VelocityVerlet(atoms, timestep=dt)
    if ensemble == "langevin":
        return Langevin(atoms, dt, temperature_K=temperature, friction=friction / _PS, fixcm=False, rng=rng)
    if ensemble == "bussi":
        return Bussi(atoms, dt, temperature_K=temperature, taut=_PS / friction, rng=rng)
    if ensemble == "baoab":
        return LangevinBAOAB(atoms, dt, temperature_K=temperature, T_tau=_PS / friction, rng=rng)
    if ensemble == "npt":
        return IsotropicMTKNPT(
            atoms, dt, temperature_K=temperature, pressure_au=pressure * units.bar, tdamp=100 * dt, pdamp=1000 * dt
        )
    raise ValueError(f"unknown ensemble {ensemble!r}; choose one of {', '.join(ENSEMBLES)}")
