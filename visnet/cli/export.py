"""``visnet export MODEL OUT.pt2``: an AOTInductor package of a model's energy, forces and stress.

    visnet export model.pt model.pt2 --dtype float32 --device cpu
    visnet export default default.pt2          # the bundled model

Prints the export time (minutes on one CPU core: two traces and a C++ build). The package loads
without the model file wherever a model path is accepted (``ViSNetCalculator(model="model.pt2")``,
``visnet md --model model.pt2``, ``visnet.predict(..., model="model.pt2")``) with the torch version
that wrote it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from visnet.inference.resolve import resolve_device, resolve_dtype


def build_parser() -> argparse.ArgumentParser:
    """The options of ``visnet export``."""
    parser = argparse.ArgumentParser(
        prog="visnet export",
        description="Export an energy model to an AOTInductor package (.pt2): energy, forces and stress "
        "in one compiled graph with dynamic numbers of atoms and edges.",
    )
    parser.add_argument("model", help="model file (.pt / .ckpt) or bundled model name (default)")
    parser.add_argument("output", help="the package to write (.pt2)")
    parser.add_argument("--dtype", default=None, help="float32 or float64 (default: as the model file)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the package runs only there; default cpu)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``visnet export``; returns the exit code (errors reach ``visnet.cli``'s boundary)."""
    from visnet.accel.export import export_model, is_exported_file
    from visnet.io.model_files import load_model

    args = build_parser().parse_args(argv)
    if Path(args.model).is_file() and is_exported_file(args.model):
        raise ValueError(
            f"{args.model} is already an exported package: visnet export needs a model file "
            "(.pt from visnet fit / save_model, or a bundled model name) as its input"
        )
    dtype = None if args.dtype is None else resolve_dtype(args.dtype)
    device = resolve_device(args.device)
    model = load_model(args.model, device=device, dtype=dtype)
    export_model(model, args.output, dtype=dtype, device=device, verbose=True)
    return 0
