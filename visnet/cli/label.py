"""``visnet label IN OUT``: energies and forces (and stress) of every structure of IN by GFN2-xTB
or any ASE calculator, written to the extended XYZ file OUT (``visnet.labelling.label``).

    visnet label frames.xyz labelled.extxyz --method gfn2-xtb --workers 4
    visnet label frames.xyz labelled.extxyz --calculator mypackage.dft:make_calculator
    visnet label ions.xyz labelled.extxyz --charge -1

Killed and rerun with the same arguments, it resumes; failed frames are listed in
OUT.failures.csv. Prints one summary line.
"""

from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    """The options of ``visnet label``."""
    parser = argparse.ArgumentParser(
        prog="visnet label",
        description="Label structures with energies (eV) and forces (eV/Å), and stress for periodic cells, "
        "by GFN2-xTB (tblite) or any ASE calculator; resumable.",
    )
    parser.add_argument("input", help="any ASE-readable structure file (all frames are labelled)")
    parser.add_argument("output", help="the extended XYZ file to write (.extxyz)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--method", default="gfn2-xtb", help="gfn2-xtb (default) or gfn1-xtb, through tblite")
    which.add_argument(
        "--calculator",
        default=None,
        metavar="MODULE:FACTORY",
        help="an ASE calculator built by a zero-argument function, e.g. ase.calculators.emt:EMT",
    )
    parser.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    parser.add_argument(
        "--charge", type=int, default=None, help="total charge of every frame (default: info['charge'] or 0)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``visnet label``; returns the exit code (errors reach ``visnet.cli``'s boundary)."""
    from visnet.labelling import label

    args = build_parser().parse_args(argv)
    report = label(
        args.input,
        args.output,
        method=args.method,
        calculator=args.calculator,
        workers=args.workers,
        charge=args.charge,
        progress=not args.no_progress,
    )
    print(report.summary())
    return 0
