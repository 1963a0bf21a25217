"""Error table (data units and meV) and parity plots of a model on a data file.

The work behind ``visnet evaluate`` (its options are parsed in ``visnet.cli.evaluate``)::

    visnet evaluate --model runs/rmd17_ethanol_cpu/model.pt \\
        --data ../shared/data/rmd17/rmd17_ethanol_train1000.npz --split test

``split`` picks structures from ``splits.npz`` of the run (``run_dir``, default the model's
folder); ``all`` (the default) uses every structure. Writes ``metrics.json``,
``parity_<target>.png`` and ``parity_forces.png`` into ``out`` (default
``<run_dir>/evaluation_<data>_<split>``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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

SPLITS = ("all", "train", "val", "test")
DATA_FORMATS = ("auto", "md17", "qm9", "ase")


@dataclass(frozen=True)
class EvaluationConfig:
    """What to evaluate and where to write it (the options of ``visnet evaluate``).

    Attributes:
        model: model file (``model.pt``), a ``visnet fit`` checkpoint (``.ckpt``) or a bundled name.
        data: data file (MD17/rMD17 npz, QM9 npz, any ASE-readable file).
        split: one of ``SPLITS``: the structures of that split of ``splits.npz``, or ``"all"``.
        trust_package: load exported packages (``.pt2``) not built on this machine.
        run_dir: run folder holding ``splits.npz`` (None: the model's folder).
        splits: an explicit ``splits.npz`` (overrides ``run_dir``).
        format: data format, one of ``DATA_FORMATS``.
        energy_unit: energy unit of the data file if it does not say.
        length_unit: length unit of the data file if it does not say.
        index: ASE index of the frames to read (ASE files).
        batch_size: structures per model call.
        max_structures: evaluate at most this many structures (None: all of the split).
        out: output folder (None: ``<run_dir>/evaluation_<data>_<split>``).
        device: torch device of the model.
    """

    model: str
    data: str
    split: str = "all"
    trust_package: bool = False
    run_dir: str | None = None
    splits: str | None = None
    format: str = "auto"
    energy_unit: str | None = None
    length_unit: str | None = None
    index: str = ":"
    batch_size: int = 16
    max_structures: int | None = None
    out: str | None = None
    device: str = "cpu"


def select_indices(config: EvaluationConfig, total: int) -> np.ndarray:
    """Indices of the structures to evaluate (the split, truncated to --max-structures)."""
    if config.split == "all":
        indices = np.arange(total)
    else:
        path = Path(config.splits) if config.splits else Path(config.run_dir or Path(config.model).parent) / SPLITS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"--split {config.split} needs {path} (give --run-dir or --splits)")
        indices = read_splits(path, total=total)[config.split]
    if config.max_structures is not None:
        if config.max_structures < 1:
            raise ValueError(f"--max-structures must be >= 1, got {config.max_structures}")
        indices = indices[: config.max_structures]
    if len(indices) == 0:
        raise ValueError(f"no structures to evaluate in split {config.split!r}")
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


def evaluate(config: EvaluationConfig) -> dict[str, Any]:
    """Evaluate ``config.model`` on ``config.data``; returns the metrics (also written to ``metrics.json``).

    Returns:
        ``{"model", "data", "split", "structures", "metrics", "plots"}``: ``metrics`` holds one row
        per quantity (the target, and forces when the data has them) with ``n``, ``mae``, ``rmse``
        and ``max`` in the data's unit (forces per Å) and ``mae_milli``/``rmse_milli`` in meV
        (meV/Å); ``plots`` the parity plot files.

    Raises:
        ValueError, FileNotFoundError: bad input, naming the option or file.
    """
    run_dir = Path(config.run_dir or Path(config.model).parent)
    out_dir = Path(config.out) if config.out else run_dir / f"evaluation_{Path(config.data).stem}_{config.split}"
    check_output_folder(out_dir, "output folder (--out)")  # before the work, not after it
    resolved = resolve_model(config.model, device=config.device, trust_package=config.trust_package)
    model, info = resolved.model, resolved.info
    meta = model.metadata
    target = meta.get("target", model.output_key)
    data = load_atoms_data(
        config.data,
        format=config.format,
        target=target,
        energy_unit=config.energy_unit,
        length_unit=config.length_unit,
        index=config.index,
    )
    indices = select_indices(config, len(data))
    data_unit = data.target_unit
    factor = unit_factor(info.output_unit, data_unit)
    use_forces = data.forces is not None and model.derivative
    pred = predict(model, AtomsDataset(data, indices, dtype=model.dtype), config.batch_size, use_forces)
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
        "model": str(config.model),
        "data": str(config.data),
        "split": config.split,
        "structures": int(len(indices)),
        "metrics": rows,
        "plots": [str(p) for p in plots],
    }
    _write_json(out_dir / "metrics.json", result)
    return result


def _write_json(path: Path, obj: Any) -> None:
    """Atomic write: a crash leaves any previous file intact and no temporary file behind."""
    atomic_write_text(path, json.dumps(obj, indent=2))
