"""``visnet evaluate``: error table (data units and meV) and parity plots of a model on a data file.

    visnet evaluate --model runs/rmd17_ethanol_cpu/model.pt \\
        --data ../shared/data/rmd17/rmd17_ethanol_train1000.npz --split test

``--split`` picks structures from ``splits.npz`` of the run (``--run-dir``, default the model's
folder); ``all`` (the default) uses every structure. Writes ``metrics.json``,
``parity_<target>.png`` and ``parity_forces.png`` into ``--out`` (default
``<run-dir>/evaluation_<data>_<split>``). The work is ``visnet.training.evaluate``.
"""

from __future__ import annotations

import argparse

from visnet.training.evaluate import DATA_FORMATS, SPLITS, EvaluationConfig, evaluate, metrics_table

__all__ = ["build_parser", "config_from_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``visnet evaluate``."""
    parser = argparse.ArgumentParser(prog="visnet evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model file (model.pt) or a visnet fit checkpoint (.ckpt)")
    parser.add_argument("--data", required=True, help="data file (MD17/rMD17 npz, QM9 npz, any ASE-readable file)")
    parser.add_argument("--split", default="all", choices=SPLITS, help="structures to evaluate")
    parser.add_argument(
        "--trust-package",
        action="store_true",
        help="load exported packages (.pt2) not built on this machine: they run native code when loaded; only for packages you trust",
    )
    parser.add_argument("--run-dir", default=None, help="run folder holding splits.npz (default: the model's folder)")
    parser.add_argument("--splits", default=None, help="an explicit splits.npz (overrides --run-dir)")
    parser.add_argument("--format", default="auto", choices=DATA_FORMATS)
    parser.add_argument("--energy-unit", default=None, help="energy unit of the data file if it does not say")
    parser.add_argument("--length-unit", default=None, help="length unit of the data file if it does not say")
    parser.add_argument("--index", default=":", help="ASE index of frames to read (ASE files)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-structures", type=int, default=None, help="evaluate at most this many structures")
    parser.add_argument("--out", default=None, help="output folder for metrics.json and parity plots")
    parser.add_argument("--device", default="cpu")
    return parser


def config_from_args(args: argparse.Namespace) -> EvaluationConfig:
    """The evaluation the parsed options ask for."""
    return EvaluationConfig(
        model=args.model,
        data=args.data,
        split=args.split,
        trust_package=args.trust_package,
        run_dir=args.run_dir,
        splits=args.splits,
        format=args.format,
        energy_unit=args.energy_unit,
        length_unit=args.length_unit,
        index=args.index,
        batch_size=args.batch_size,
        max_structures=args.max_structures,
        out=args.out,
        device=args.device,
    )


def main(argv: list[str] | None = None) -> int:
    """Run ``visnet evaluate``; returns 0 (bad input reaches ``visnet.cli.main``'s error boundary)."""
    result = evaluate(config_from_args(build_parser().parse_args(argv)))
    print(f"{result['structures']} structures of {result['data']} ({result['split']})")
    print(metrics_table(result["metrics"]))
    for plot in result["plots"]:
        print(f"parity plot: {plot}")
    return 0
