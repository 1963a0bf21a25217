"""``visnet md``: molecular dynamics with a ViSNet model from the command line.

Examples::

    visnet md aspirin --ensemble langevin --temperature 300 --steps 2000
    visnet md "CCO" --ensemble bussi --temperature 500 --model my_model.pt
    visnet md structure.xyz --check-nve --steps 2000 --timestep 0.25
    visnet md aspirin --model runs/ens --max-force-std 0.2     # committee: harvest uncertain frames
    visnet md --list-molecules
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from visnet.dynamics.integrators import ENSEMBLES
from visnet.dynamics.nve import MIN_DRIFT_SAMPLES
from visnet.dynamics.runner import MDConfig, MDResult, run_md
from visnet.files.paths import check_output_folder
from visnet.inference.calculator import DEFAULT_SKIN
from visnet.inference.fragmented import DEFAULT_NONBONDED_CUTOFF, check_nonbonded_cutoff
from visnet.inference.resolve import ACCEL_CHOICES
from visnet.structures.molecules import named_structures

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``visnet md``."""
    p = argparse.ArgumentParser(
        prog="visnet md",
        description="Molecular dynamics with a ViSNet model (ASE integrators).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "structure",
        nargs="?",
        default="aspirin",
        help="ASE-readable file, bundled molecule name (see --list-molecules) or SMILES",
    )
    p.add_argument("--ensemble", choices=ENSEMBLES, default="langevin", help="integrator / ensemble")
    p.add_argument("-T", "--temperature", type=float, default=300.0, help="target (NVE: initial) temperature, K")
    p.add_argument("--timestep", type=float, default=0.5, help="time step, fs")
    p.add_argument("--steps", type=int, default=1000, help="MD steps (production)")
    p.add_argument(
        "--equilibration-steps",
        type=int,
        default=0,
        help="steps run first and not recorded: outputs and temperature statistics cover production only",
    )
    p.add_argument(
        "--friction", type=float, default=10.0, help="Langevin friction, 1/ps (Bussi/BAOAB tau = 1/friction)"
    )
    p.add_argument("--pressure", type=float, default=1.0, help="NPT pressure, bar")
    p.add_argument("--seed", type=int, default=0, help="seed of velocities, thermostat noise and SMILES embedding")
    p.add_argument(
        "--model",
        action="append",
        default=None,
        help="model file, run folder (visnet fit --ensemble: all its members) or bundled name "
        "(default: 'default'); repeat for a committee",
    )
    p.add_argument(
        "--max-force-std",
        type=float,
        default=None,
        help="committee only: write frames whose max force std exceeds this (eV/Å) to <name>_uncertain.extxyz",
    )
    p.add_argument(
        "--stop-on-uncertain",
        action="store_true",
        help="with --max-force-std: stop at the first such frame (exit code 0)",
    )
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: 1 for systems under 200 atoms, else torch's default)",
    )
    p.add_argument("--skin", type=float, default=DEFAULT_SKIN, help="neighbour-list skin, Å")
    p.add_argument(
        "--fragmentation",
        choices=("ai2bmd",),
        default=None,
        help="split a protein (PDB/mmCIF) into AI2BMD dipeptide and ACE-NME units (docs: tutorials/proteins.md)",
    )
    p.add_argument(
        "--nonbonded",
        choices=("amber14", "none"),
        default="amber14",
        help="with --fragmentation: Amber14 Coulomb + LJ between atoms sharing no unit, or none",
    )
    p.add_argument(
        "--nonbonded-cutoff",
        type=_cutoff,
        default=DEFAULT_NONBONDED_CUTOFF,
        help="Å: cutoff of that Amber term (shifted force, linear in the atoms); "
        "'none': the exact sum over all pairs (O(N²))",
    )
    p.add_argument(
        "--accel",
        choices=ACCEL_CHOICES,
        default="auto",
        help="the model's form: auto (eager, then its exported package from the cache once ready; built in "
        "the background for runs long enough, see `visnet cache`), eager, compile or export (build it now)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="the same as --accel compile (visnet.compile_model): ~1 min once, then faster steps",
    )
    p.add_argument(
        "--trust-package",
        action="store_true",
        help="load exported packages (.pt2) not built on this machine: they run native code when loaded; only for packages you trust",
    )
    p.add_argument("--output-dir", type=Path, default=Path("md_output"))
    p.add_argument("--name", default=None, help="file name prefix (default: the structure's name)")
    p.add_argument("--log-interval", type=int, default=10, help="steps between log lines")
    p.add_argument("--traj-interval", type=int, default=10, help="steps between trajectory frames")
    p.add_argument("--frame", type=int, default=-1, help="frame of a multi-frame structure file")
    p.add_argument(
        "--keep-velocities",
        action="store_true",
        help="start from the momenta stored in the structure file (continue a .traj run)",
    )
    p.add_argument("--max-force", type=float, default=50.0, help="blow-up guard: largest force, eV/Å")
    p.add_argument("--min-distance", type=float, default=0.5, help="blow-up guard: smallest distance, Å")
    p.add_argument(
        "--max-temperature",
        type=float,
        default=None,
        help="blow-up guard: highest temperature, K (default max(4 T, T + 1000))",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-plots", action="store_true", help="no PNG plots at the end")
    p.add_argument("--check-nve", action="store_true", help="run NVE and report the energy drift in eV/atom/ps")
    p.add_argument(
        "--max-drift",
        type=float,
        default=None,
        help="with --check-nve: exit with status 1 if |drift| exceeds this, eV/atom/ps",
    )
    p.add_argument("--list-molecules", action="store_true", help="list the bundled molecules and exit")
    return p


def config_from_args(args: argparse.Namespace) -> MDConfig:
    """MDConfig from parsed arguments (``--check-nve`` forces the NVE ensemble)."""
    return MDConfig(
        structure=args.structure,
        ensemble="nve" if args.check_nve else args.ensemble,
        temperature=args.temperature,
        timestep=args.timestep,
        steps=args.steps,
        friction=args.friction,
        pressure=args.pressure,
        seed=args.seed,
        model=args.model if args.model and len(args.model) > 1 else (args.model or ["default"])[0],
        dtype=args.dtype,
        device=args.device,
        skin=args.skin,
        compile=args.compile,
        accel=args.accel,
        trust_package=args.trust_package,
        output_dir=args.output_dir,
        name=args.name,
        log_interval=args.log_interval,
        traj_interval=args.traj_interval,
        progress=not args.no_progress,
        plots=not args.no_plots,
        max_force=args.max_force,
        min_distance=args.min_distance,
        max_temperature=args.max_temperature,
        frame=args.frame,
        keep_velocities=args.keep_velocities,
        threads=args.threads,
        equilibration_steps=args.equilibration_steps,
        max_force_std=args.max_force_std,
        stop_on_uncertain=args.stop_on_uncertain,
        fragmentation=args.fragmentation,
        nonbonded=None if args.nonbonded == "none" else args.nonbonded,
        nonbonded_cutoff=args.nonbonded_cutoff,
    )


def _cutoff(text: str) -> float | None:
    """--nonbonded-cutoff: Å, or "none" (no cutoff)."""
    if text.strip().lower() == "none":
        return None
    try:
        return check_nonbonded_cutoff(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a positive number of Å or 'none', got {text!r}") from None


def _summary(result: MDResult, config: MDConfig) -> str:
    steps = result.steps_done + result.equilibration_steps
    thermo = result.thermo
    head = f"{result.steps_done} steps"
    if result.equilibration_steps:
        head += f" after {result.equilibration_steps} equilibration steps"
    rate = f" ({steps / result.wall_time:.1f} steps/s)" if steps and result.wall_time > 0 else ""
    lines = [f"{head} in {result.wall_time:.1f} s{rate}", f"model: {result.form}"]
    if result.temperature is not None:
        target = None if config.ensemble == "nve" else config.temperature
        lines.append(result.temperature.report(target, result.dof))
        lines.append(f"final total energy {thermo['total'][-1]:.5f} eV")
    if result.force_std is not None and len(result.force_std[1]):
        lines.append(f"committee max force std: largest {result.force_std[1].max():.4f} eV/Å")
    paths = result.paths
    lines += [f"trajectory: {paths.traj}", f"extended XYZ: {paths.extxyz}", f"log: {paths.log}"]
    if result.force_std is not None:
        lines.append(f"uncertainty log: {paths.uncertainty_log}")
    if result.uncertain_steps:
        lines.append(f"uncertain frames: {len(result.uncertain_steps)} in {paths.uncertain}")
    lines += [f"plot: {plot}" for plot in result.plots]
    return "\n".join(lines)


def _check_nve_options(args: argparse.Namespace) -> None:
    """ValueError unless ``--check-nve`` will have the samples a drift needs (and ``--max-drift`` a check)."""
    if args.max_drift is not None and not args.check_nve:
        raise ValueError("--max-drift needs --check-nve (it bounds the drift that --check-nve measures)")
    if not args.check_nve or args.steps < 0 or args.log_interval < 1:  # bad values: run_md names them
        return
    samples = args.steps // args.log_interval + 1  # the log records step 0 and every interval
    if samples < MIN_DRIFT_SAMPLES:
        raise ValueError(
            f"--check-nve needs at least {MIN_DRIFT_SAMPLES} energy samples: --steps {args.steps} with "
            f"--log-interval {args.log_interval} records {samples}; give --steps >= "
            f"{(MIN_DRIFT_SAMPLES - 1) * args.log_interval} or a smaller --log-interval"
        )


def main(argv: list[str] | None = None) -> int:
    """Run ``visnet md``; returns 0 on success, 1 on blow-up or excessive drift (bad input reaches
    ``visnet.cli.main``'s error boundary: one line, exit code 2)."""
    args = build_parser().parse_args(argv)
    if args.list_molecules:
        print("\n".join(named_structures()))
        return 0
    config = config_from_args(args)
    _check_nve_options(args)
    check_output_folder(config.output_dir, "output folder (--output-dir)")
    try:
        result = run_md(config)
    except FileNotFoundError as err:  # no bundled model in this installation: say how to give one
        if args.model or "bundled model" not in str(err):
            raise
        raise FileNotFoundError(f"{err} (pass --model PATH to use a model file)") from err
    print(_summary(result, config))
    if result.stopped_uncertain:
        print(f"visnet md: {result.message}")
        return 0
    if result.message:
        print(f"visnet md: {result.message}", file=sys.stderr)
        return 1
    if args.check_nve and result.drift is not None:
        print(result.drift.report())
        if args.max_drift is not None and abs(result.drift.drift) > args.max_drift:
            print(f"visnet md: |drift| exceeds --max-drift {args.max_drift} eV/atom/ps", file=sys.stderr)
            return 1
    return 0
