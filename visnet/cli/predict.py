"""``visnet predict``: properties of molecules from the command line (without ``--config``).

    visnet predict --smiles CCO c1ccccc1O --model qm9
    visnet predict --input frames.xyz --model runs/rmd17_ethanol_cpu/model.pt --output results.csv
    visnet predict aspirin CCO molecule.sdf --model qm9 --output results.json --errors skip
    visnet predict CCO --model energy.pt --model dipole.pt

Writes CSV (``.csv``) or JSON with forces and geometries (``.json``) atomically; without
``--output`` prints a table. Files, directories and globs with ``--output`` a ``.csv``, ``.parquet``
or ``.extxyz`` file are screened instead (``visnet.screen``: streamed, sharded, resumable, over
``--devices`` processes): ``visnet predict "frames/*.xyz" --output results.parquet --devices 2``. ``visnet predict --config configs/<name>.yaml`` is LightningCLI's
predict on a data set instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from visnet.files.paths import refuse_folder
from visnet.inference.resolve import ACCEL_CHOICES
from visnet.prediction.collection import is_collection_item
from visnet.prediction.results import Prediction, results_to_table, write_csv, write_json
from visnet.prediction.screen import DEFAULT_CHUNK_SIZE, ScreenSummary
from visnet.prediction.screen_output import OUTPUT_SUFFIXES

# Columns left out of the printed table (kept in files, as are dipole vector components).
_HIDDEN = ("index", "input", "source", "frame", "smiles")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="visnet predict",
        description="Predict energies and molecular properties of SMILES, structure files and bundled molecules.",
        epilog="visnet predict --config configs/<name>.yaml runs LightningCLI's predict on a data set instead.",
    )
    parser.add_argument("inputs", nargs="*", help="files, SMILES or bundled molecule names (auto-detected)")
    parser.add_argument("--smiles", nargs="+", default=[], metavar="SMILES", help="SMILES strings")
    parser.add_argument("--input", nargs="+", default=[], metavar="FILE", help="ASE-readable files (every frame)")
    parser.add_argument("--smiles-file", default=None, help="text file with one SMILES per line (# comments)")
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help="model file, bundled model or bundle name (qm9); repeat to combine (default: default)",
    )
    parser.add_argument("--output", "-o", default=None, help="results.csv or results.json (default: print a table)")
    parser.add_argument("--properties", nargs="+", default=None, help="only these properties (default: all)")
    parser.add_argument("--batch-size", type=int, default=64, help="structures per model call")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--errors", default="raise", choices=["raise", "skip"], help="skip: report bad inputs, go on")
    parser.add_argument(
        "--trust-package",
        action="store_true",
        help="load exported packages (.pt2) not built on this machine: they run native code when loaded; only for packages you trust",
    )
    parser.add_argument(
        "--accel",
        choices=ACCEL_CHOICES,
        default="auto",
        help="energy models' form: auto (eager, then the exported package once ready; built in the background "
        "for long predictions, see `visnet cache`), eager, compile or export (build it now)",
    )
    parser.add_argument("--relax", action="store_true", help="relax each structure with the energy model first")
    parser.add_argument("--seed", type=int, default=0, help="RDKit embedding seed for SMILES")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    screening = parser.add_argument_group(
        "screening (files, directories or globs with --output .csv/.parquet/.extxyz: streamed, sharded, resumable)"
    )
    screening.add_argument("--devices", type=int, default=1, help="processes (GPUs) per node (Lightning DDP)")
    screening.add_argument("--num-nodes", type=int, default=1, help="nodes (under SLURM or torchrun)")
    screening.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="structures per shard")
    screening.add_argument("--keep-shards", action="store_true", help="keep <output>.shards/ after the output")
    return parser.parse_args(argv)


def read_smiles_file(path: str | Path) -> list[str]:
    """SMILES from a text file: the first word of each non-empty line; ``#`` starts a comment."""
    path = Path(path)
    refuse_folder(path, "SMILES file")
    if not path.is_file():
        raise FileNotFoundError(f"SMILES file not found: {path}")
    lines = (line.split("#", 1)[0].split() for line in path.read_text(encoding="utf-8").splitlines())
    return [words[0] for words in lines if words]


def gather_inputs(args: argparse.Namespace) -> list[Any]:
    """Positional inputs, then --input files (as paths), --smiles and --smiles-file, in that order."""
    items: list[Any] = list(args.inputs)
    items += [Path(p) for p in args.input]
    items += [f"smiles:{s}" for s in args.smiles]
    if args.smiles_file:
        items += [f"smiles:{s}" for s in read_smiles_file(args.smiles_file)]
    return items


def format_table(results: list[Prediction], width: int = 28) -> str:
    """A fixed-width text table of the scalar results (numbers to 6 significant digits)."""
    shown = lambda key: key not in _HIDDEN and "_vector_" not in key  # noqa: E731
    rows = [{k: v for k, v in row.items() if shown(k)} for row in results_to_table(results)]
    if not rows:
        return "(no structures)"
    columns = list(rows[0])
    if not any(row["error"] for row in rows):
        columns.remove("error")

    def cell(value: Any) -> str:
        text = (f"{value:.6g}" if abs(value) < 1e3 else f"{value:.4f}") if isinstance(value, float) else str(value)
        return text if len(text) <= width else text[: width - 1] + "…"

    cells = [[cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def write_results(results: list[Prediction], path: str) -> Path:
    """Write ``results`` as CSV or JSON by the file suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return write_csv(results, path)
    if suffix == ".json":
        return write_json(results, path)
    raise ValueError(f"--output {path}: use a .csv or .json file name")


def screens(args: argparse.Namespace) -> bool:
    """The screening path: ``--output`` is a .csv/.parquet/.extxyz file and every input is a
    file, directory or glob (no SMILES or molecule names).

    Raises:
        ValueError: screening options (--devices, --num-nodes, .parquet/.extxyz) without it.
    """
    inputs = [*args.inputs, *args.input]
    suffix = Path(args.output).suffix.lower() if args.output else ""
    eligible = bool(inputs) and not args.smiles and not args.smiles_file and all(map(is_collection_item, inputs))
    if eligible and suffix in OUTPUT_SUFFIXES:
        # without pyarrow (the ``screen`` extra) a CSV is written in memory, as before screening existed
        return suffix != ".csv" or importlib.util.find_spec("pyarrow") is not None
    if suffix in (".parquet", ".extxyz") or args.devices != 1 or args.num_nodes != 1:
        raise ValueError(
            "--devices, --num-nodes and .parquet/.extxyz outputs screen files, directories or globs: "
            "give only those, with --output results.csv|.parquet|.extxyz"
        )
    return False


def run_screen(args: argparse.Namespace) -> ScreenSummary:
    """Screen the parsed arguments' files into ``args.output`` (``visnet.screen``)."""
    from visnet.prediction.screen import screen

    names = args.model or ["default"]
    return screen(
        [*args.inputs, *(Path(p) for p in args.input)],
        args.output,
        model=names[0] if len(names) == 1 else names,
        properties=args.properties,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        devices=args.devices,
        num_nodes=args.num_nodes,
        device=args.device,
        dtype=args.dtype,
        accel=args.accel,
        trust_package=args.trust_package,
        relax=args.relax,
        progress=False if args.no_progress else None,
        keep_shards=args.keep_shards,
    )


def report_screen(summary: ScreenSummary) -> int:
    """Print what a screen wrote (rank 0 only); 1 when every structure failed, else 0."""
    if summary.output is None:
        return 0
    print(
        f"{summary.structures - summary.failed} of {summary.structures} structures predicted; results written to {summary.output}"
    )
    if summary.errors_file is not None:
        print(
            f"visnet predict: {summary.failed} structure(s) without results, listed in {summary.errors_file}",
            file=sys.stderr,
        )
    return 1 if summary.structures and summary.failed == summary.structures else 0


def run(args: argparse.Namespace) -> list[Prediction]:
    """Predict for the parsed arguments; returns the results."""
    from visnet.prediction.predict import predict

    items = gather_inputs(args)
    if not items:
        raise ValueError("nothing to predict: give SMILES, files or molecule names (see visnet predict --help)")
    if args.output and Path(args.output).suffix.lower() not in (".csv", ".json"):  # fail before the work
        raise ValueError(f"--output {args.output}: use a .csv or .json file name")
    names = args.model or ["default"]
    model = names[0] if len(names) == 1 else names
    return predict(
        items,
        model=model,
        properties=args.properties,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        errors=args.errors,
        trust_package=args.trust_package,
        accel=args.accel,
        relax=args.relax,
        seed=args.seed,
        progress=False if args.no_progress else None,
    )


def main(argv: list[str] | None = None) -> int:
    """Run ``visnet predict``; returns 0, or 1 when every structure failed (bad input reaches
    ``visnet.cli.main``'s error boundary: one line, exit code 2)."""
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if screens(args):
        return report_screen(run_screen(args))
    results = run(args)
    if args.output:
        path = write_results(results, args.output)
    failed = [r for r in results if not r.ok]
    if args.output:
        print(f"{len(results) - len(failed)} of {len(results)} structures predicted; results written to {path}")
    else:
        print(format_table(results))
    for r in failed:
        print(f"visnet predict: skipped: {r.error}", file=sys.stderr)
    return 1 if results and len(failed) == len(results) else 0
