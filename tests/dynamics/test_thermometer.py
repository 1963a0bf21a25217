"""The kinetic temperature read from BAOAB's mid-step velocities, on an Einstein crystal.

Independent harmonic oscillators (every atom tethered to its site by a spring) are the case where
BAOAB's full-step bias is known in closed form: ⟨m v²⟩ = k_B T (1 − h²ω²/4) at the end of a step,
exact at the O step (Leimkuhler & Matthews 2013). With hω = 1 the full-step temperature is 25 %
cold, far outside the ~1 % statistical error of these runs (192 degrees of freedom, 3,000 steps,
thermostat time 10 steps), so the test can tell the estimators apart.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.langevinbaoab import LangevinBAOAB
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

from visnet.dynamics.thermometer import kinetic_temperature, midstep_velocities

TEMPERATURE = 300.0
MASS = 1.0  # amu
TIMESTEP = 1.0 * units.fs
OMEGA = 1.0 / TIMESTEP  # hω = 1
SPRING = MASS * OMEGA**2  # eV/Å²


class Tethers(Calculator):
    """E = Σ k/2 |x_i − x_i⁰|²: 3N independent oscillators of frequency sqrt(k/m)."""

    implemented_properties = ("energy", "forces")

    def __init__(self, sites: np.ndarray, spring: float) -> None:
        super().__init__()
        self.sites, self.spring = sites.copy(), spring

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        displacement = self.atoms.positions - self.sites
        self.results = {
            "energy": 0.5 * self.spring * float(np.sum(displacement**2)),
            "forces": -self.spring * displacement,
        }


def einstein_crystal(seed: int) -> Atoms:
    sites = 3.0 * np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    atoms = Atoms(["H"] * len(sites), positions=sites, masses=[MASS] * len(sites))
    atoms.calc = Tethers(sites, SPRING)
    MaxwellBoltzmannDistribution(atoms, temperature_K=TEMPERATURE, rng=np.random.default_rng(seed))
    return atoms


def mean_temperatures(dyn, atoms: Atoms, steps: int = 3000, skip: int = 300) -> tuple[float, float]:
    """(mean full-step ``get_temperature()``, mean ``kinetic_temperature``) after ``skip`` steps."""
    full, mid = [], []
    dyn.run(skip)
    for _ in range(steps):
        dyn.run(1)
        full.append(atoms.get_temperature())
        mid.append(kinetic_temperature(atoms, dyn))
    return float(np.mean(full)), float(np.mean(mid))


def test_baoab_midstep_temperature_is_canonical_where_the_full_step_is_cold():
    atoms = einstein_crystal(seed=0)
    dyn = LangevinBAOAB(atoms, TIMESTEP, temperature_K=TEMPERATURE, T_tau=10 * TIMESTEP, rng=1)
    full, mid = mean_temperatures(dyn, atoms)
    assert full == pytest.approx(TEMPERATURE * (1 - (TIMESTEP * OMEGA) ** 2 / 4), rel=0.03)
    assert mid == pytest.approx(TEMPERATURE, rel=0.03)


def test_midstep_velocities_are_those_after_the_o_step():
    """v − (h/2) F/m at the end of a step equals the velocity BAOAB held after its O step: replay
    one step by hand with the same random numbers."""
    atoms = einstein_crystal(seed=2)
    dyn = LangevinBAOAB(atoms, TIMESTEP, temperature_K=TEMPERATURE, T_tau=10 * TIMESTEP, rng=3)
    x, v = atoms.positions.copy(), atoms.get_velocities()
    f = atoms.get_forces()
    noise = np.random.default_rng(3).normal(size=x.shape)
    c = np.exp(-TIMESTEP / (10 * TIMESTEP))
    v_half = v + 0.5 * TIMESTEP * f / MASS
    v_o = c * v_half + np.sqrt((1 - c**2) * units.kB * TEMPERATURE / MASS) * noise
    dyn.run(1)
    np.testing.assert_allclose(midstep_velocities(atoms, TIMESTEP), v_o, rtol=1e-10, atol=1e-12)


def test_other_integrators_read_the_full_step_temperature():
    atoms = einstein_crystal(seed=4)
    atoms.set_constraint(FixCom())  # fixcm=False + FixCom, as visnet.dynamics (fixcm=True is deprecated)
    dyn = Langevin(atoms, TIMESTEP, temperature_K=TEMPERATURE, friction=0.01, fixcm=False, rng=np.random.default_rng(5))
    dyn.run(3)
    assert kinetic_temperature(atoms, dyn) == atoms.get_temperature()
