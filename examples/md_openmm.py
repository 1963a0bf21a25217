"""Molecular dynamics in OpenMM with a ViSNet model (the ``openmmml`` potential ``visnet``).

    python examples/md_openmm.py

``MLPotential("visnet")`` is the bundled model; ``model="x.pt"`` any model file. For ML/MM (a
protein by ViSNet in Amber14/TIP3P water) use ``createMixedSystem`` or ``scripts/run_mlmm.py``.
"""

from __future__ import annotations

import openmm
from _settings import pick
from ase.io import read
from openmm import app, unit
from openmmml import MLPotential

from visnet.structures.molecules import named_structures

atoms = read(named_structures()["aspirin"])
topology = app.Topology()
residue = topology.addResidue("ASP", topology.addChain())
for symbol in atoms.get_chemical_symbols():
    topology.addAtom(symbol, app.Element.getBySymbol(symbol), residue)

system = MLPotential("visnet").createSystem(topology, dtype="float32")  # model="x.pt", device="cuda"
integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.5 * unit.femtosecond)
simulation = app.Simulation(topology, system, integrator, openmm.Platform.getPlatformByName("Reference"))
simulation.context.setPositions(atoms.positions * 0.1)  # Å -> nm
simulation.minimizeEnergy(maxIterations=pick(100, 5))
simulation.reporters.append(
    app.StateDataReporter("openmm.csv", pick(100, 2), step=True, potentialEnergy=True, temperature=True)
)
simulation.step(pick(1000, 4))
state = simulation.context.getState(getEnergy=True)
print("potential energy:", state.getPotentialEnergy().in_units_of(unit.kilojoule_per_mole))
