"""``visnet evaluate``: error table (data units and meV) and parity plots of a model on a data file.

    visnet evaluate --model runs/rmd17_ethanol_cpu/model.pt \\
        --data ../shared/data/rmd17/rmd17_ethanol_train1000.npz --split test

``--split`` picks structures from ``splits.npz`` of the run (``--run-dir``, default the model's
folder); ``all`` (the default) uses every structure. Writes ``metrics.json``,
``parity_<target>.png`` and ``parity_forces.png`` into ``--out`` (default
``<run-dir>/evaluation_<data>_<split>``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from visnet.data.dataset import AtomsDataset, collate
from visnet.data.loading import load_atoms_data
from visnet.data.splits import SPLITS_FILE, read_splits
from visnet.files.atomic import atomic_write_text
from visnet.files.paths import check_output_folder
from visnet.inference.resolve import resolve_model
from visnet.structures.batching import find_faulty
from visnet.training.metrics import error_metrics
from visnet.training.plots import parity_plot
from visnet.units import energy_factor, is_energy_unit


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="visnet evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model file (model.pt) or a visnet fit checkpoint (.ckpt)")
    parser.add_argument("--data", required=True, help="data file (MD17/rMD17 npz, QM9 npz, any ASE-readable file)")
    parser.add_argument(
        "--split", default="all", choices=["all", "train", "val", "test"], help="structures to evaluate"
    )
    parser.add_argument(
        "--trust-package",
        action="store_true",
        help="load exported packages (.pt2) not built on this machine: they run native code when loaded; only for packages you trust",
    )
    parser.add_argument("--run-dir", default=None, help="run folder holding splits.npz (default: the model's folder)")
    parser.add_argument("--splits", default=None, help="an explicit splits.npz (overrides --run-dir)")
    parser.add_argument("--format", default="auto", choices=["auto", "md17", "qm9", "ase"])
    parser.add_argument("--energy-unit", default=None, help="energy unit of the data file if it does not say")
    parser.add_argument("--length-unit", default=None, help="length unit of the data file if it does not say")
    parser.add_argument("--index", default=":", help="ASE index of frames to read (ASE files)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-structures", type=int, default=None, help="evaluate at most this many structures")
    parser.add_argument("--out", default=None, help="output folder for metrics.json and parity plots")
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def select_indices(args: argparse.Namespace, total: int) -> np.ndarray:
    """Indices of the structures to evaluate (the split, truncated to --max-structures)."""
    if args.split == "all":
        indices = np.arange(total)
    else:
        path = Path(args.splits) if args.splits else Path(args.run_dir or Path(args.model).parent) / SPLITS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"--split {args.split} needs {path} (give --run-dir or --splits)")
        indices = read_splits(path, total=total)[args.split]
    if args.max_structures is not None:
        if args.max_structures < 1:
            raise ValueError(f"--max-structures must be >= 1, got {args.max_structures}")
        indices = indices[: args.max_structures]
    if len(indices) == 0:
        raise ValueError(f"no structures to evaluate in split {args.split!r}")
    return indices


def predict(model: torch.nn.Module, dataset: AtomsDataset, batch_size: int, forces: bool) -> dict[str, np.ndarray]:
    """Predictions of ``model`` (its units) for every structure of ``dataset``.

    Raises:
        ValueError: a structure the model rejects (named by its index in the data file).
    """
    source = dataset.data.source
    key = model.output_key
    outputs: dict[str, list[np.ndarray]] = {key: [], "forces": []}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    for batch in loader:
        pos = batch["pos"].to(device=model.device, dtype=model.dtype)
        cell = batch["cell"].to(device=model.device, dtype=model.dtype) if "cell" in batch else None
        pbc = batch["pbc"].to(model.device) if "pbc" in batch else None
        z, index = batch["z"].to(model.device), batch["batch"].to(model.device)
        try:
            out = model(z, pos, index, cell, pbc, compute_forces=forces)
        except ValueError as err:
            structures = [_structure(batch, g) for g in range(len(batch["index"]))]
            raise find_faulty(
                structures, lambda one: _probe(model, one), err, lambda _, one: f"structure {one[0]} of {source}"
            ) from None
        outputs[key].append(out[key].detach().double().cpu().numpy())
        if forces:
            outputs["forces"].append(out["forces"].detach().double().cpu().numpy())
    return {k: np.concatenate(v) for k, v in outputs.items() if v}


def _structure(batch: dict[str, torch.Tensor], g: int) -> tuple[int, torch.Tensor, torch.Tensor, Any, Any]:
    """(index in the data file, z (n,), pos (n, 3), cell (3, 3) or None, pbc (3,) or None) of graph ``g``."""
    atoms = batch["batch"] == g
    cell = batch["cell"][g] if "cell" in batch else None
    pbc = batch["pbc"][g] if "pbc" in batch else None
    return int(batch["index"][g]), batch["z"][atoms], batch["pos"][atoms], cell, pbc


def _probe(model: torch.nn.Module, structure: tuple[int, torch.Tensor, torch.Tensor, Any, Any]) -> None:
    """Evaluate one structure of a batch without forces (raises the model's ValueError for it)."""
    _, z, pos, cell, pbc = structure
    to = {"device": model.device, "dtype": model.dtype}
    cell = cell.to(**to) if cell is not None else None
    pbc = pbc.to(model.device) if pbc is not None else None
    with torch.no_grad():
        model(z.to(model.device), pos.to(**to), cell=cell, pbc=pbc, compute_forces=False)


def unit_factor(model_unit: str, data_unit: str) -> float:
    """Factor from the model's output unit to the data's (energies convert; other units must match)."""
    if is_energy_unit(model_unit) and is_energy_unit(data_unit):
        return energy_factor(model_unit, data_unit)
    if model_unit != data_unit:
        raise ValueError(f"the model predicts in {model_unit!r} but the data is in {data_unit!r}; cannot convert")
    return 1.0


def metrics_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table of the metric rows."""
    header = f"{'quantity':<10} {'n':>8} {'MAE':>12} {'RMSE':>12}  {'unit':<12} {'MAE':>12} {'RMSE':>12}  unit"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['quantity']:<10} {r['n']:>8} {r['mae']:>12.5g} {r['rmse']:>12.5g}  {r['unit']:<12} "
            f"{r['mae_milli']:>12.5g} {r['rmse_milli']:>12.5g}  {r['milli_unit']}"
        )
    return "\n".join(lines)


def _row(quantity: str, pred: np.ndarray, ref: np.ndarray, unit: str, per_length: bool) -> dict[str, Any]:
    stats = error_metrics(torch.as_tensor(pred), torch.as_tensor(ref))
    milli = energy_factor(unit, "meV") if is_energy_unit(unit) else 1.0
    suffix = "/Å" if per_length else ""
    return {
        "quantity": quantity,
        "n": int(ref.size),
        "unit": unit + suffix,
        "mae": stats["mae"],
        "rmse": stats["rmse"],
        "max": stats["max"],
        "milli_unit": ("meV" if is_energy_unit(unit) else unit) + suffix,
        "mae_milli": stats["mae"] * milli,
        "rmse_milli": stats["rmse"] * milli,
    }


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation; returns the metrics dict (also written to ``metrics.json``)."""
    run_dir = Path(args.run_dir or Path(args.model).parent)
    out_dir = Path(args.out) if args.out else run_dir / f"evaluation_{Path(args.data).stem}_{args.split}"
    check_output_folder(out_dir, "output folder (--out)")  # before the work, not after it
    resolved = resolve_model(args.model, device=args.device, trust_package=args.trust_package)
    model, info = resolved.model, resolved.info
    meta = model.metadata
    target = meta.get("target", model.output_key)
    data = load_atoms_data(
        args.data,
        format=args.format,
        target=target,
        energy_unit=args.energy_unit,
        length_unit=args.length_unit,
        index=args.index,
    )
    indices = select_indices(args, len(data))
    data_unit = data.target_unit
    factor = unit_factor(info.output_unit, data_unit)
    use_forces = data.forces is not None and model.derivative
    pred = predict(model, AtomsDataset(data, indices, dtype=model.dtype), args.batch_size, use_forces)
    subset = data.subset(indices)
    rows = [_row(target, pred[model.output_key] * factor, subset.y, data_unit, per_length=False)]
    offset = float(subset.y.mean()) if target == "energy" else 0.0
    plots = [
        parity_plot(
            subset.y - offset,
            pred[model.output_key] * factor - offset,
            out_dir / f"parity_{target}.png",
            target if not offset else f"{target} − {offset:.6g}",
            data_unit,
        )
    ]
    if use_forces:
        rows.append(_row("forces", pred["forces"] * factor, subset.forces, data_unit, per_length=True))
        plots.append(
            parity_plot(
                subset.forces,
                pred["forces"] * factor,
                out_dir / "parity_forces.png",
                "force components",
                f"{data_unit}/Å",
            )
        )
    result = {
        "model": str(args.model),
        "data": str(args.data),
        "split": args.split,
        "structures": int(len(indices)),
        "metrics": rows,
        "plots": [str(p) for p in plots],
    }
    _write_json(out_dir / "metrics.json", result)
    return result


def _write_json(path: Path, obj: Any) -> None:
    """Atomic write: a crash leaves any previous file intact and no temporary file behind."""
    atomic_write_text(path, json.dumps(obj, indent=2))


def main(argv: list[str] | None = None) -> int:
    """``visnet evaluate`` entry point; returns the exit code."""
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        result = evaluate(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"visnet evaluate: error: {err}", file=sys.stderr)
        return 2
    print(f"{result['structures']} structures of {result['data']} ({result['split']})")
    print(metrics_table(result["metrics"]))
    for plot in result["plots"]:
        print(f"parity plot: {plot}")
    return 0
