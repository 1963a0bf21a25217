"""ML/MM molecular dynamics of a protein in water: the protein by ViSNet, water and ions by Amber14/TIP3P.

    python scripts/run_mlmm.py chignolin.pdb --steps 10000 --output-dir runs/mlmm
    python scripts/run_mlmm.py --sequence GYDPETGTWG --fragmentation ai2bmd --steps 1000

Reads the PDB with ``visnet.proteins.openmm_protein`` (checks, hydrogens added at pH 7), or builds
the peptide from ``--sequence`` (RDKit, ACE/NME caps; ``visnet.proteins.building.peptide_pdb``),
solvates it (``--padding`` nm of TIP3P water, Na+/Cl- to neutralise plus ``--ions`` molar),
builds the Amber14 system with PME and hands the protein to ViSNet through openmm-ml's
``createMixedSystem`` (our ``visnet`` potential): bonded and non-bonded MM terms inside the protein
are removed, the protein's interaction with water and ions stays Amber's (mechanical embedding,
Amber charges). The protein is one ViSNet call per step (whole molecule), or with
``--fragmentation ai2bmd`` its AI2BMD units plus the Amber term between units (12 Å cutoff).
Then: energy minimisation, ``--equilibration`` steps of Langevin dynamics (300 K, 1/ps),
``--steps`` production steps with the trajectory in ``<name>.dcd`` (topology in ``<name>.pdb``,
both readable by VMD and MDTraj), a log in ``<name>.csv``, a checkpoint ``<name>.chk`` every
``--checkpoint-interval`` steps (``--resume`` continues a stopped run from it, appending to the
DCD), and the measured steps/s printed at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

SOLVENT = ("HOH", "NA", "CL")  # residue names addSolvent adds


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pdb", type=Path, nargs="?", help="protein PDB/mmCIF (or give --sequence)")
    parser.add_argument("--sequence", help="one-letter sequence of a peptide to build instead (ACE/NME caps)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--fragmentation", choices=("ai2bmd",), default=None)
    parser.add_argument("--accel", default="eager", choices=("auto", "eager", "compile", "export"))
    parser.add_argument("--steps", type=int, default=10_000, help="production steps (1 fs each: 10 ps)")
    parser.add_argument("--equilibration", type=int, default=1_000, help="equilibration steps")
    parser.add_argument("--minimise-iterations", type=int, default=500)
    parser.add_argument("--timestep", type=float, default=1.0, help="fs")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--padding", type=float, default=1.0, help="water around the protein, nm")
    parser.add_argument("--ions", type=float, default=0.15, help="NaCl beyond neutralising, mol/L")
    parser.add_argument("--cutoff", type=float, default=1.0, help="MM direct-space cutoff (PME), nm")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--report-interval", type=int, default=100)
    parser.add_argument("--checkpoint-interval", type=int, default=1_000)
    parser.add_argument("--resume", action="store_true", help="continue from <name>.chk in --output-dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path("mlmm_output"))
    args = parser.parse_args(argv)
    if (args.pdb is None) == (args.sequence is None):
        parser.error("give a PDB file or --sequence, not both")
    for name in ("steps", "report_interval", "checkpoint_interval"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def build(args: argparse.Namespace, name: Path):
    """(simulation, topology, number of ML atoms) of the solvated protein (with ``--resume``: the
    solvated system ``<name>.pdb`` of the stopped run)."""
    import openmm
    from openmm import app, unit
    from openmmml import MLPotential

    from visnet.proteins.building import peptide_pdb
    from visnet.proteins.reading import openmm_protein

    forcefield = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    if args.resume and Path(f"{name}.pdb").exists():  # the solvated system of the stopped run
        solvated = app.PDBFile(f"{name}.pdb")
        modeller = app.Modeller(solvated.topology, solvated.positions)
        protein = [r.index for r in modeller.topology.residues() if r.name not in SOLVENT]
    else:
        pdb = args.pdb or peptide_pdb(args.sequence, args.output_dir / f"{args.sequence}_input.pdb", seed=args.seed)
        topology, positions = openmm_protein(pdb)
        modeller = app.Modeller(topology, positions)
        modeller.addSolvent(
            forcefield, model="tip3p", padding=args.padding * unit.nanometer, ionicStrength=args.ions * unit.molar
        )
        protein = [r.index for r in topology.residues()]
    mm_system = forcefield.createSystem(
        modeller.topology,
        nonbondedMethod=app.PME,
        nonbondedCutoff=args.cutoff * unit.nanometer,
        constraints=None,
        rigidWater=True,
    )
    protein_residues = set(protein)
    ml_atoms = [a.index for a in modeller.topology.atoms() if a.residue.index in protein_residues]
    system = MLPotential("visnet", model=args.model, accel=args.accel).createMixedSystem(
        modeller.topology, mm_system, ml_atoms, dtype=args.dtype, device="cpu", fragmentation=args.fragmentation
    )
    integrator = openmm.LangevinMiddleIntegrator(
        args.temperature * unit.kelvin, 1.0 / unit.picosecond, args.timestep * unit.femtosecond
    )
    integrator.setRandomNumberSeed(args.seed + 1)
    platform = openmm.Platform.getPlatformByName("CPU")
    simulation = app.Simulation(modeller.topology, system, integrator, platform, {"Threads": "1"})
    simulation.context.setPositions(modeller.positions)
    return simulation, modeller.topology, len(ml_atoms)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    from openmm import app, unit

    from visnet.files.atomic import atomic_open

    args.output_dir.mkdir(parents=True, exist_ok=True)
    name = args.output_dir / (args.pdb.stem if args.pdb else args.sequence)
    checkpoint = Path(f"{name}.chk")
    simulation, topology, n_ml = build(args, name)
    print(f"{n_ml} ML atoms, {simulation.system.getNumParticles()} in all", flush=True)
    if args.resume and checkpoint.exists():
        simulation.loadCheckpoint(str(checkpoint))
        print(f"resumed from {checkpoint} at production step {simulation.currentStep}", flush=True)
    else:
        print(f"minimising ({args.minimise_iterations} iterations at most), equilibrating", flush=True)
        simulation.minimizeEnergy(maxIterations=args.minimise_iterations)
        simulation.context.setVelocitiesToTemperature(args.temperature * unit.kelvin, args.seed + 2)
        simulation.step(args.equilibration)
        simulation.currentStep = 0
        state = simulation.context.getState(getPositions=True)
        with atomic_open(f"{name}.pdb", "w") as handle:
            app.PDBFile.writeFile(topology, state.getPositions(), handle)
    done = simulation.currentStep
    if done >= args.steps:
        print(f"nothing to do: {done} of {args.steps} steps done", flush=True)
        return
    append = done > 0
    simulation.reporters.append(app.DCDReporter(f"{name}.dcd", args.report_interval, append=append))
    simulation.reporters.append(
        app.StateDataReporter(
            f"{name}.csv",
            args.report_interval,
            step=True,
            time=True,
            potentialEnergy=True,
            temperature=True,
            speed=True,
            append=append,
        )
    )
    simulation.reporters.append(app.CheckpointReporter(str(checkpoint), args.checkpoint_interval))
    start = time.perf_counter()
    simulation.step(args.steps - done)
    seconds = time.perf_counter() - start
    simulation.saveCheckpoint(str(checkpoint))
    steps = args.steps - done
    ps = steps * args.timestep / 1000
    print(
        f"{steps} steps ({ps:g} ps) in {seconds:.1f} s: {steps / seconds:.2f} steps/s, "
        f"{ps / seconds * 86400:.2f} ps/day; {name}.dcd",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
