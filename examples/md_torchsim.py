"""Batched molecular dynamics in TorchSim: many molecules in one model call per step.

    python examples/md_torchsim.py

``ViSNetModel`` is a ``torch_sim`` ``ModelInterface``: energy (S,) eV, forces (N, 3) eV/Å and, for
periodic states, stress (S, 3, 3) eV/Å³. Needs ``pip install "visnet[torchsim]"`` (Python ≥ 3.11).
"""

from __future__ import annotations

import torch_sim as ts
from _settings import pick
from ase.io import read

from visnet.integrations.torchsim import ViSNetModel
from visnet.structures.molecules import named_structures

molecules = [read(path) for path in named_structures().values()]  # the ten bundled molecules
model = ViSNetModel("default", dtype="float32")  # or a model file / a ViSNet; device="cuda"
final = ts.integrate(
    system=molecules,
    model=model,
    integrator=ts.nvt_langevin,
    n_steps=pick(1000, 3),
    temperature=300.0,
    timestep=0.0005,  # ps
)
print("energies (eV):", final.energy)
