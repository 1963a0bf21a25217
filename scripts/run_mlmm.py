"""ML/MM molecular dynamics of a protein in water: the protein by ViSNet, water and ions by Amber14/TIP3P.

    python scripts/run_mlmm.py chignolin.pdb --steps 10000 --output-dir runs/mlmm

Reads the PDB with ``visnet.proteins.openmm_protein`` (checks, hydrogens added), solvates it
(``--padding`` nm of TIP3P water, Na+/Cl- to neutralise plus ``--ions`` molar), builds the Amber14
system with PME and hands the protein to ViSNet through openmm-ml's ``createMixedSystem`` (our
``visnet`` potential): bonded and non-bonded MM terms inside the protein are removed, the protein's
interaction with water and ions stays Amber's (mechanical embedding, Amber charges). Then: energy
minimisation, ``--equilibration`` steps of Langevin dynamics (300 K, 1/ps), ``--steps`` production
steps with the trajectory in ``<name>.dcd`` (topology in ``<name>.pdb``, both readable by VMD and
MDTraj), a log in ``<name>.csv``, and the measured steps/s printed at the end. The protein is one
ViSNet call per step (whole molecule; the AI2BMD fragmentation runs through the ASE calculator).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pdb", type=Path)
    parser.add_argument("--model", default="default")
    parser.add_argument("--steps", type=int, default=10_000, help="production steps (1 fs each: 10 ps)")
    parser.add_argument("--equilibration", type=int, default=1_000, help="equilibration steps")
    parser.add_argument("--timestep", type=float, default=1.0, help="fs")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--padding", type=float, default=1.0, help="water around the protein, nm")
    parser.add_argument("--ions", type=float, default=0.15, help="NaCl beyond neutralising, mol/L")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--report-interval", type=int, default=100)
    parser.add_argument("--output-dir", type=Path, default=Path("mlmm_output"))
    args = parser.parse_args()

    import openmm
    from openmm import app, unit
    from openmmml import MLPotential

    from visnet.proteins.reading import openmm_protein

    topology, positions = openmm_protein(args.pdb)
    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    modeller = app.Modeller(topology, positions)
    modeller.addSolvent(
        forcefield, model="tip3p", padding=args.padding * unit.nanometer, ionicStrength=args.ions * unit.molar
    )
    mm_system = forcefield.createSystem(
        modeller.topology,
        nonbondedMethod=app.PME,
        nonbondedCutoff=1.0 * unit.nanometer,
        constraints=None,
        rigidWater=True,
    )
    protein_residues = {r.index for r in topology.residues()}
    ml_atoms = [a.index for a in modeller.topology.atoms() if a.residue.index in protein_residues]
    system = MLPotential("visnet", model=args.model).createMixedSystem(
        modeller.topology, mm_system, ml_atoms, dtype=args.dtype, device="cpu"
    )
    integrator = openmm.LangevinMiddleIntegrator(
        args.temperature * unit.kelvin, 1.0 / unit.picosecond, args.timestep * unit.femtosecond
    )
    simulation = app.Simulation(modeller.topology, system, integrator, openmm.Platform.getPlatformByName("CPU"))
    simulation.context.setPositions(modeller.positions)
    print(f"{len(ml_atoms)} ML atoms, {system.getNumParticles()} in all; minimising", flush=True)
    simulation.minimizeEnergy(maxIterations=500)
    simulation.context.setVelocitiesToTemperature(args.temperature * unit.kelvin)
    simulation.step(args.equilibration)

    args.output_dir.mkdir(parents=True, exist_ok=True)
    name = args.output_dir / args.pdb.stem
    state = simulation.context.getState(getPositions=True)
    with open(f"{name}.pdb", "w") as handle:
        app.PDBFile.writeFile(modeller.topology, state.getPositions(), handle)
    simulation.reporters.append(app.DCDReporter(f"{name}.dcd", args.report_interval))
    simulation.reporters.append(
        app.StateDataReporter(
            f"{name}.csv",
            args.report_interval,
            step=True,
            time=True,
            potentialEnergy=True,
            temperature=True,
            speed=True,
        )
    )
    start = time.perf_counter()
    simulation.step(args.steps)
    seconds = time.perf_counter() - start
    ps = args.steps * args.timestep / 1000
    print(
        f"{args.steps} steps ({ps:g} ps) in {seconds:.0f} s: {args.steps / seconds:.2f} steps/s; {name}.dcd", flush=True
    )


if __name__ == "__main__":
    main()
