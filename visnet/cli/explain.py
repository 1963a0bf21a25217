"""``visnet explain STRUCTURE --model M [--property P] [--output-dir D]``: per-atom explanation of a
prediction, as a CSV and pictures (``visnet.explain``)."""

from __future__ import annotations

import argparse
import re
import warnings
from pathlib import Path

from visnet.explain.attribution import DEFAULT_STEPS
from visnet.explain.explain import MAX_FRAMES, SubsampledWarning, explain
from visnet.explain.outputs import write_explanation
from visnet.explain.properties import METHODS
from visnet.files.paths import check_output_folder

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    """The options of ``visnet explain``."""
    p = argparse.ArgumentParser(
        prog="visnet explain",
        description="Per-atom explanation of a prediction: exact per-atom energies, readout terms of extensive "
        "properties, integrated gradients of intensive ones (HOMO, LUMO, gap, mu), committee force "
        "uncertainty, attention; writes per_atom.csv, depiction.png/.svg, page.html (3D, offline) and more.",
    )
    p.add_argument("structure", help="a structure or trajectory file, a bundled molecule name, or SMILES")
    p.add_argument(
        "--model",
        nargs="+",
        default=["default"],
        help="model file(s), 'default', 'qm9', a run folder; several: a committee",
    )
    p.add_argument("--property", default=None, help="output to explain (energy, U0, gap, homo, lumo, mu, ...)")
    p.add_argument("--method", choices=METHODS, default=None, help="default: by the property")
    p.add_argument(
        "--output-dir", type=Path, default=None, help="folder for the files (default: explain_<structure>_<property>)"
    )
    p.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help=f"integrated-gradients quadrature points (default {DEFAULT_STEPS})",
    )
    p.add_argument(
        "--max-frames", type=int, default=MAX_FRAMES, help=f"subsample longer trajectories (default {MAX_FRAMES})"
    )
    p.add_argument("--no-attention", action="store_true", help="skip the attention weights and picture")
    p.add_argument("--device", default=None, help="cpu, cuda (default: CUDA when available)")
    p.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    p.add_argument("--seed", type=int, default=0, help="RDKit embedding seed for SMILES")
    return p


def _default_folder(structure: str, prop: str) -> Path:
    stem = Path(structure).stem if Path(structure).suffix else structure
    return Path(f"explain_{re.sub(r'[^A-Za-z0-9_.-]+', '_', stem)[:40]}_{prop}")


def main(argv: list[str] | None = None) -> int:
    """Run ``visnet explain``; returns 0 (errors raise; ``visnet.cli.main`` prints them)."""
    args = parser().parse_args(argv)
    if args.output_dir is not None:
        check_output_folder(args.output_dir, "output folder (--output-dir)")
    model = args.model[0] if len(args.model) == 1 else args.model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SubsampledWarning)  # printed below as a note of the summary
        e = explain(
            args.structure,
            model,
            args.property,
            method=args.method,
            steps=args.steps,
            attention=not args.no_attention,
            max_frames=args.max_frames,
            device=args.device,
            dtype=args.dtype,
            seed=args.seed,
        )
    folder = args.output_dir or _default_folder(args.structure, e.property)
    written = write_explanation(e, folder)
    print(e.summary())
    print(f"wrote {len(written)} files to {folder}/: " + ", ".join(p.name for p in written))
    return 0
