"""Exporting a model (AOTInductor ``.pt2``) and the fast-path cache behind ``accel="auto"``.

    python examples/export_fast_path.py

``visnet export`` / ``visnet.export_model`` compile an energy model ahead of time into one package:
energy, per-atom energies, forces and virial in one graph, loaded without a compiler. Every entry
point takes ``accel``: "auto" (the default: eager now, the cached package once it is ready),
"eager", "compile" or "export". Exporting takes one to several minutes of one CPU core.
"""

from __future__ import annotations

import time

from _settings import TINY
from ase.build import molecule

import visnet
from visnet.cli import main as visnet_cli

model = visnet.load_model("default", dtype="float32")
if TINY:  # a 1-layer, 8-channel model exports faster than the bundled one
    model = visnet.ViSNet(hidden_channels=8, num_layers=1, num_rbf=4, num_heads=2, lmax=1, max_z=10)
start = time.perf_counter()
visnet.export_model(model, "model.pt2")  # or: visnet export default model.pt2 --dtype float32
print(f"exported in {time.perf_counter() - start:.0f} s")

# The package runs anywhere a model runs: load_exported, the calculator, predict, visnet md --model.
exported = visnet.load_exported("model.pt2")
atoms = molecule("CH3CH2OH")
atoms.calc = visnet.ViSNetCalculator(model="model.pt2", dtype="float32")
eager = visnet.ViSNetCalculator(model=model, dtype="float32", accel="eager")
print(f"exported {atoms.get_potential_energy():.5f} eV, eager {eager.get_potential_energy(atoms.copy()):.5f} eV")

# The fast-path cache (what accel="auto" uses): list it; `visnet cache build default` fills it ahead.
assert visnet_cli(["cache", "list"]) == 0
