"""``visnet lammps IN.lmp --model M``: run a LAMMPS input with a ViSNet model as its potential.

    visnet lammps in.lmp --model default --elements H C O
    mpiexec -n 4 visnet lammps in.lmp --model model.pt --mode domain     # the venv's mpiexec

The input sets everything but the potential (units metal or real, box, atoms, masses, fixes, thermo,
runs). ViSNet is attached (``visnet.integrations.lammps.ViSNetLammps``: zero pair style, external
fix) just before the input's first ``run``, ``minimize`` or ``rerun`` command, so that command and
everything after it see the model. Keep that first run in the input file itself (not in an
``include``d file or behind a ``jump``): commands before it run without a potential.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from visnet.errors import VisnetError

RUN_COMMANDS = ("run", "minimize", "rerun")


def build_parser() -> argparse.ArgumentParser:
    """The options of ``visnet lammps``."""
    parser = argparse.ArgumentParser(
        prog="visnet lammps",
        description="Run a LAMMPS input file with a ViSNet model as the potential (one or many MPI ranks: "
        "launch with mpiexec -n K).",
    )
    parser.add_argument("input", help="LAMMPS input file (units metal or real; no pair style needed)")
    parser.add_argument("--model", default="default", help="model file, exported package or bundled name")
    parser.add_argument(
        "--elements", nargs="+", default=None, help="element of each atom type, type 1 first (default: from masses)"
    )
    parser.add_argument(
        "--mode",
        default="auto",
        choices=("auto", "gather", "domain"),
        help="several ranks: domain (each rank its atoms + ghost shell) or gather (rank 0 evaluates all); "
        "auto: gather on one rank, domain on several",
    )
    parser.add_argument("--dtype", default="float64", help="float64 (default) or float32")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument(
        "--accel",
        default=None,
        choices=("auto", "eager", "compile", "export"),
        help="the model's form (default: auto in gather mode, the fast path; eager in domain mode)",
    )
    parser.add_argument(
        "--trust-package", action="store_true", help="load an exported package not built on this machine"
    )
    parser.add_argument(
        "--var", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="LAMMPS index variable"
    )
    parser.add_argument("--log", default="log.lammps", help="LAMMPS log file (default log.lammps; 'none')")
    parser.add_argument("--quiet", action="store_true", help="no LAMMPS screen output")
    return parser


def split_input(text: str) -> tuple[str, str]:
    """``text`` split before the first command (``&``-continued lines joined) that starts a run."""
    lines = text.splitlines(keepends=True)
    continued = False
    for i, line in enumerate(lines):
        words = line.split("#", 1)[0].split()
        if not continued and words and words[0] in RUN_COMMANDS:
            return "".join(lines[:i]), "".join(lines[i:])
        continued = line.rstrip().endswith("&")
    return text, ""


def main(argv: list[str] | None = None) -> int:
    """Run ``visnet lammps``; returns the exit code (errors reach ``visnet.cli``'s boundary)."""
    from visnet.integrations.lammps import ViSNetLammps, load_lammps

    args = build_parser().parse_args(argv)
    path = Path(args.input)
    if not path.is_file():
        raise FileNotFoundError(f"LAMMPS input file not found: {path}")
    setup, runs = split_input(path.read_text())
    cmdargs = ["-log", args.log, "-nocite"] + (["-screen", "none"] if args.quiet else [])
    for name, value in args.var:
        cmdargs += ["-var", name, value]
    lmp = load_lammps().lammps(cmdargs=cmdargs)
    try:
        _lammps_input(lmp.commands_string, setup)
        visnet = ViSNetLammps(
            lmp,
            args.model,
            args.elements,
            dtype=args.dtype,
            device=args.device,
            mode=args.mode,
            accel=args.accel,
            trust_package=args.trust_package,
        )
        _lammps_input(visnet.command, runs)
    finally:
        lmp.close()
    return 0


def _lammps_input(run: Callable[[str], None], text: str) -> None:
    """``run(text)``; an error LAMMPS reports for the input (not ours) becomes one line."""
    try:
        run(text)
    except ValueError:
        raise
    except Exception as err:
        if type(err).__name__ not in ("Exception", "MPIAbortException"):
            raise
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise VisnetError(f"LAMMPS: {first.strip()}") from err
