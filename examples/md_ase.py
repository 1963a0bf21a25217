"""Molecular dynamics in ASE with the bundled model: your own loop, or ``visnet.dynamics.run_md``.

    python examples/md_ase.py

The calculator returns eV, eV/Å (and eV/Å³ for periodic cells) whatever units the model was
trained in, reuses its neighbour list with a Verlet skin, and with ``accel="auto"`` (the default)
switches to the model's exported package in long runs.
"""

from __future__ import annotations

from _settings import pick
from ase import units
from ase.io import read
from ase.md.langevin import Langevin

try:
    from ase.md.velocitydistribution import thermalize_momenta  # ASE >= 3.26
except ImportError:
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta
import numpy as np

from visnet import ViSNetCalculator
from visnet.dynamics import MDConfig, run_md
from visnet.structures.molecules import named_structures

# 1. Your own ASE loop: aspirin at 300 K, 0.5 fs steps.
atoms = read(named_structures()["aspirin"])
atoms.calc = ViSNetCalculator(model="default")  # float64; device="cuda", dtype="float32" for speed
thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
dyn = Langevin(atoms, 0.5 * units.fs, temperature_K=300, friction=0.01 / units.fs, fixcm=False)
dyn.run(pick(1000, 5))
print(f"ASE loop: {dyn.nsteps} steps, T = {atoms.get_temperature():.0f} K, E = {atoms.get_potential_energy():.3f} eV")

# 2. The same through the package's driver (what `visnet md` runs): outputs, plots, blow-up guard.
config = MDConfig(
    structure="aspirin",
    ensemble="langevin",
    temperature=300.0,
    steps=pick(2000, 6),
    equilibration_steps=pick(500, 2),
    log_interval=pick(10, 2),
    traj_interval=pick(10, 2),
    output_dir="md_output",
    progress=False,
    plots=not pick(0, 1),
)
result = run_md(config)
t = result.temperature
print(f"run_md: mean temperature {t.mean:.0f} ± {t.error:.0f} K over {t.duration:.3f} ps; files in md_output/")
