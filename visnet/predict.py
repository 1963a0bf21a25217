"""``visnet.predict``: energies and molecular properties of Atoms, files, SMILES and RDKit molecules.

    >>> import visnet
    >>> results = visnet.predict(["CCO", "c1ccccc1O"], model="qm9")   # bundle of QM9 property models
    >>> results[0]["gap"], results[0].units["gap"]                     # (6.93..., 'eV')
    >>> visnet.write_csv(results, "results.csv")                       # or write_json / to_dataframe

Units of the results: energies (energy, U0, HOMO, LUMO, gap, ...) in eV, forces in eV/Å, dipole
moments in Debye, other properties in the unit the model file records (QM9: alpha bohr^3,
r2 bohr^2, Cv cal/(mol K), A/B/C GHz); see ``visnet.units.reporting_unit``. Positions are Å.
Structures are evaluated many per model call (``batch_size``), on CUDA when available.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from torch import Tensor, nn

from visnet.batching import batch_inputs, split_outputs
from visnet.bundles import bundle_members, bundle_path
from visnet.calculator import NonFiniteResultError, ViSNetCalculator
from visnet.inputs import check_atoms
from visnet.model_io import ModelInfo, ModelLike, prepare_model, resolve_device, resolve_dtype
from visnet.molecules import atoms_from_mol, is_rdkit_mol, load_structures, read_frames
from visnet.results import Prediction
from visnet.units import reporting_unit

__all__ = ["PropertyModel", "load_property_models", "predict"]

DEFAULT_BATCH_SIZE = 64
# Inputs from which the progress bar shows when ``progress=None``.
PROGRESS_MIN_STRUCTURES = 100
ERROR_MODES = ("raise", "skip")


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class Output:
    """One reported property: model output ``key`` × ``factor`` = value in ``unit``."""

    key: str
    factor: float
    unit: str
    per_atom: bool = False


@dataclass
class PropertyModel:
    """A model ready for prediction: a private eval-mode copy with its reported outputs.

    Attributes:
        model: the ViSNet (on the prediction device and dtype).
        info: what it predicts, its units and elements (``visnet.model_io.ModelInfo``).
        outputs: property name -> ``Output`` (e.g. "energy", "forces", "mu", "mu_vector").
        entry: the bundle manifest entry (unit, test MAE, ...), {} for single models.
    """

    model: nn.Module
    info: ModelInfo
    outputs: dict[str, Output]
    entry: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Model file, bundle member ("qm9:U0") or class name (for messages)."""
        return self.info.label

    @property
    def length(self) -> float:
        """Å per model length unit (positions are divided by it)."""
        return self.info.units.length

    @property
    def elements(self) -> frozenset[int]:
        """Atomic numbers the model may be used for."""
        return self.info.elements


def model_outputs(info: ModelInfo) -> dict[str, Output]:
    """Property name -> ``Output`` for everything the model of ``info`` predicts, in reporting units.

    Scalar heads give ``<key>`` (molecule); the dipole head adds ``<key>_vector`` (3,); the
    per-atom vector head gives ``<key>`` (N, 3); energy models with ``derivative`` give "forces".
    """
    key = info.output_key
    factor, unit = reporting_unit(info.output_unit)
    if info.per_atom:
        return {key: Output(key, factor, unit, per_atom=True)}
    outputs = {key: Output(key, factor, unit)}
    if info.vector_output:
        outputs[f"{key}_vector"] = Output(f"{key}_vector", factor, unit)
    elif info.has_forces:
        outputs["forces"] = Output("forces", factor / info.units.length, "eV/Å", per_atom=True)
    return outputs


def _model_specs(model: Any) -> list[tuple[str, ModelLike, dict[str, Any]]]:
    """(label, model or file, manifest entry) for a model, file, bundle name/manifest, or a list of them."""
    if isinstance(model, nn.Module):
        return [(type(model).__name__, model, {})]
    if isinstance(model, (str, os.PathLike)):
        manifest = bundle_path(model)
        if manifest is None:
            return [(str(model), model, {})]
        bundle = Path(manifest).stem
        return [(f"{bundle}:{prop}", file, entry) for prop, file, entry in bundle_members(manifest)]
    if isinstance(model, (list, tuple)):
        if not model:
            raise ValueError("model: the list of models is empty")
        return [spec for item in model for spec in _model_specs(item)]
    raise TypeError(
        f"model must be a ViSNet, a model file, a bundled model/bundle name, or a list; got {type(model).__name__}"
    )


def load_property_models(
    model: Any = "default", device: str | torch.device | None = None, dtype: str | torch.dtype = "float64"
) -> list[PropertyModel]:
    """The models named by ``model`` (see ``predict``), ready for prediction.

    Raises:
        ValueError: two models predict the same property, or a model records no output unit.
        FileNotFoundError: a model file (or a bundle's member) is missing.
    """
    device, dtype = resolve_device(device), resolve_dtype(dtype)
    models, owner = [], {}
    for label, spec, entry in _model_specs(model):
        module, info = prepare_model(spec, device, dtype)
        info = replace(info, label=label)
        outputs = model_outputs(info)
        for name in outputs:
            if name in owner:
                raise ValueError(f"models {owner[name]!r} and {label!r} both predict {name!r}; use one of them")
            owner[name] = label
        models.append(PropertyModel(module, info, outputs, dict(entry)))
    return models


def _select(models: list[PropertyModel], properties: Sequence[str] | None) -> tuple[list[PropertyModel], set[str]]:
    """The models needed for ``properties`` (None: all) and the set of wanted property names."""
    available = [name for m in models for name in m.outputs]
    if properties is None:
        return models, set(available)
    wanted = [properties] if isinstance(properties, str) else list(properties)
    unknown = [p for p in wanted if p not in available]
    if unknown:
        raise ValueError(f"unknown properties {unknown}: the model(s) predict {available}")
    return [m for m in models if set(m.outputs) & set(wanted)], set(wanted)


# --------------------------------------------------------------------------- inputs


@dataclass
class _Structure:
    """One structure to predict (or an input that failed to load: ``atoms`` None, ``error`` set)."""

    input_index: int
    atoms: Atoms | None
    name: str
    source: str
    frame: int | None = None
    smiles: str | None = None
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        frame = "" if self.frame is None else f" frame {self.frame}"
        return f"input {self.input_index}{frame} ({self.name})"


def _as_list(inputs: Any) -> list[Any]:
    """The inputs as a list: a single Atoms / string / path / RDKit Mol becomes a list of one."""
    if isinstance(inputs, (Atoms, str, os.PathLike)) or is_rdkit_mol(inputs):
        return [inputs]
    if isinstance(inputs, Iterable):
        return list(inputs)
    raise TypeError(
        f"inputs must be Atoms, a file path, SMILES, an RDKit Mol or a list of them; got {type(inputs).__name__}"
    )


def _from_atoms(atoms: Atoms, index: int) -> _Structure:
    clean = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    name = str(atoms.info.get("name") or atoms.get_chemical_formula())
    return _Structure(index, clean, name, f"Atoms (input {index})")


def _from_loaded(atoms: Atoms, index: int) -> _Structure:
    info = atoms.info
    smiles = info.get("smiles")
    name = smiles or str(info.get("name") or atoms.get_chemical_formula())
    frame = info.get("frame")
    source = str(info.get("source", ""))
    if frame is not None:
        source = f"{source} frame {frame}"
    return _Structure(index, atoms, name, source, frame=frame, smiles=smiles)


def _load_input(item: Any, index: int, seed: int) -> list[_Structure]:
    """The structures of one input (several for a multi-frame file)."""
    if isinstance(item, Atoms):
        if len(item) == 0:
            raise ValueError("the Atoms object holds no atoms")
        return [_from_atoms(item, index)]
    if is_rdkit_mol(item):
        return [_from_loaded(atoms_from_mol(item), index)]
    if isinstance(item, os.PathLike):
        return [_from_loaded(a, index) for a in read_frames(item)]
    if isinstance(item, str):
        return [_from_loaded(a, index) for a in load_structures(item, seed=seed)]
    raise TypeError(
        f"cannot predict an input of type {type(item).__name__}: give Atoms, a file path, SMILES or an RDKit Mol"
    )


def _describe(item: Any) -> str:
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    return type(item).__name__


def _read_inputs(items: list[Any], seed: int, errors: str, progress: bool) -> list[_Structure]:
    """Every structure of every input, in order; failures raise or become error entries."""
    from tqdm.auto import tqdm

    structures: list[_Structure] = []
    for index, item in enumerate(tqdm(items, desc="reading inputs", unit="input", disable=not progress)):
        try:
            structures.extend(_load_input(item, index, seed))
        except (ValueError, FileNotFoundError, TypeError) as err:
            if errors == "raise":
                raise type(err)(f"input {index}: {err}" if len(items) > 1 else str(err)) from None
            structures.append(_Structure(index, None, _describe(item), _describe(item), error=f"input {index}: {err}"))
    return structures


def _check(structures: list[_Structure], elements: frozenset[int], errors: str) -> None:
    """Mark (skip) or raise for structures with elements the models do not cover or bad geometry."""
    for s in structures:
        if s.error is not None:
            continue
        try:
            check_atoms(s.atoms, elements)
        except ValueError as err:
            _fail(s, err, errors)


def _fail(s: _Structure, err: Exception, errors: str) -> None:
    message = f"{s.label}: {err}"
    if errors == "raise":
        raise type(err)(message) from None
    s.error = message


# --------------------------------------------------------------------------- relaxation


def _relaxation_model(models: list[PropertyModel]) -> PropertyModel:
    """The first energy model (a potential) of ``models``."""
    for m in models:
        if m.info.is_energy_model:
            return m
    raise ValueError(f"relax=True needs an energy model; the model(s) {[m.label for m in models]} predict no energy")


def _relax(
    structures: list[_Structure], model: PropertyModel, fmax: float, steps: int, errors: str, progress: bool
) -> None:
    """Relax every structure in place with ``model`` (ASE BFGS until max |F| < ``fmax`` eV/Å)."""
    from ase.optimize import BFGS
    from tqdm.auto import tqdm

    calc = ViSNetCalculator(model=model.model, device=model.model.device, dtype=model.model.dtype)
    for s in tqdm([s for s in structures if s.error is None], desc="relaxing", unit="mol", disable=not progress):
        atoms = s.atoms.copy()
        atoms.calc = calc
        try:
            optimizer = BFGS(atoms, logfile=None)
            converged = bool(optimizer.run(fmax=fmax, steps=steps))
            final = float(np.linalg.norm(atoms.get_forces(), axis=1).max())
        except (ValueError, FloatingPointError) as err:
            _fail(s, err, errors)
            continue
        atoms.calc = None
        s.atoms = atoms
        s.info["relaxation"] = {
            "model": model.label,
            "steps": int(optimizer.nsteps),
            "fmax": final,
            "converged": converged,
        }


# --------------------------------------------------------------------------- evaluation


def _value(t: Tensor, factor: float) -> float | np.ndarray:
    array = t.detach().to(device="cpu", dtype=torch.float64).numpy() * factor
    return float(array) if array.ndim == 0 else array


def _run_model(m: PropertyModel, atoms: list[Atoms], want: set[str]) -> list[dict[str, Any]]:
    """One model call for a batch of structures -> per-structure {property: value} in reporting units."""
    names = [n for n in m.outputs if n in want]
    forces = "forces" in names
    inputs = batch_inputs(atoms, m.length, m.model.dtype, m.model.device)
    with torch.set_grad_enabled(forces):
        out = m.model(*inputs, compute_forces=forces)
    keys = {m.outputs[name].key for name in names}
    per_atom = {m.outputs[name].key for name in names if m.outputs[name].per_atom}
    parts = split_outputs({k: out[k] for k in keys}, [len(a) for a in atoms], per_atom)
    return [{name: _value(part[m.outputs[name].key], m.outputs[name].factor) for name in names} for part in parts]


def _evaluate(models: list[PropertyModel], atoms: list[Atoms], want: set[str]) -> list[dict[str, Any]]:
    """Properties of every structure of the batch from every model (one call per model)."""
    merged: list[dict[str, Any]] = [{} for _ in atoms]
    for m in models:
        for k, values in enumerate(_run_model(m, atoms, want)):
            merged[k].update(values)
    for values in merged:
        bad = [name for name, v in values.items() if not np.isfinite(v).all()]
        if bad:
            raise NonFiniteResultError(f"the model returned non-finite {', '.join(bad)} (atoms too close?)")
    return merged


def _evaluate_batch(models: list[PropertyModel], batch: list[_Structure], want: set[str], errors: str) -> None:
    """Fill ``s.info["properties"]`` for the batch; on failure retry one by one to name the culprit."""
    try:
        values = _evaluate(models, [s.atoms for s in batch], want)
    except (ValueError, FloatingPointError) as err:
        if len(batch) == 1:
            _fail(batch[0], err, errors)
            return
        for s in batch:
            _evaluate_batch(models, [s], want, errors)
        return
    for s, props in zip(batch, values):
        s.info["properties"] = props


def _batches(items: list[_Structure], size: int) -> Iterator[list[_Structure]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _result(index: int, s: _Structure, units: dict[str, str]) -> Prediction:
    props = s.info.pop("properties", {}) if s.error is None else {}
    info = {k: v for k, v in s.info.items() if k != "properties"}
    return Prediction(
        index=index,
        input_index=s.input_index,
        name=s.name,
        source=s.source,
        atoms=s.atoms,
        properties=props,
        units={k: units[k] for k in props},
        error=s.error,
        frame=s.frame,
        smiles=s.smiles,
        info=info,
    )


# --------------------------------------------------------------------------- API


def predict(
    inputs: Any,
    model: Any = "default",
    properties: Sequence[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float64",
    errors: str = "raise",
    relax: bool = False,
    relax_fmax: float = 0.05,
    relax_steps: int = 200,
    seed: int = 0,
    progress: bool | None = None,
) -> list[Prediction]:
    """Predict every property the model(s) give for each input structure.

    Args:
        inputs: an ``ase.Atoms``; a path to any ASE-readable file (every frame becomes one
            structure); a SMILES string (RDKit: hydrogens added, ETKDGv3 3D embedding with
            ``seed``, MMFF relaxation); a bundled molecule name ("aspirin"); an RDKit ``Mol``
            with explicit hydrogens and a 3D conformer; or a list mixing these.
        model: a ViSNet module, a model file, a bundled model name ("default"), a bundle name or
            manifest (``"qm9"``: one model per QM9 property), or a list of these (their
            properties are combined; two models must not predict the same property).
        properties: names to predict (e.g. ["energy", "mu"]); None: all. "forces" is computed
            only when asked for (or with None) and the model is an energy model.
        batch_size: structures per model call.
        device: "cpu", "cuda", or None (CUDA when available).
        dtype: "float64" (default) or "float32"; applied to private copies of the models.
        errors: "raise" (default) stops at the first bad input with a ValueError /
            FileNotFoundError naming it; "skip" records the message in that result's ``error``
            and predicts the rest.
        relax: first relax each structure with the energy model of ``model`` (ASE BFGS until
            max |F| < ``relax_fmax`` eV/Å or ``relax_steps`` steps); the relaxed geometry is used.
        seed: RDKit embedding seed for SMILES (same seed, same geometry, same prediction).
        progress: show tqdm progress bars (None: when there are 100+ structures).

    Returns:
        One ``visnet.Prediction`` per structure, in input order (files expand to their frames):
        ``result.properties`` (floats; (3,) dipole vectors; (N, 3) forces), ``result.units``
        ("eV", "eV/Å", "D", ...), ``result.atoms`` (the geometry used, Å), ``result.source``.
        Tables: ``visnet.results_to_table``, ``visnet.to_dataframe``, ``visnet.write_csv``,
        ``visnet.write_json``. An empty list of inputs gives an empty list.

    Raises:
        ValueError: invalid SMILES (quoted), an element the model does not know (named), an
            unreadable file (named), bad arguments.
        FileNotFoundError: a file input or a model file does not exist.
    """
    if errors not in ERROR_MODES:
        raise ValueError(f"errors must be one of {ERROR_MODES}, got {errors!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    items = _as_list(inputs)
    if not items:
        return []
    models, want = _select(load_property_models(model, device, dtype), properties)
    structures = _read_inputs(items, seed, errors, _show(progress, len(items)))
    _check(structures, frozenset.intersection(*(m.elements for m in models)), errors)
    show = _show(progress, len(structures))
    if relax:
        _relax(structures, _relaxation_model(models), relax_fmax, relax_steps, errors, show)
    _predict_all(models, structures, want, batch_size, errors, show)
    units = {name: spec.unit for m in models for name, spec in m.outputs.items()}
    return [_result(k, s, units) for k, s in enumerate(structures)]


def _show(progress: bool | None, count: int) -> bool:
    return count >= PROGRESS_MIN_STRUCTURES if progress is None else bool(progress)


def _predict_all(
    models: list[PropertyModel],
    structures: list[_Structure],
    want: set[str],
    batch_size: int,
    errors: str,
    progress: bool,
) -> None:
    """Evaluate the loadable structures ``batch_size`` at a time, with a progress bar."""
    from tqdm.auto import tqdm

    good = [s for s in structures if s.error is None]
    with tqdm(total=len(good), desc="predicting", unit="mol", disable=not progress) as bar:
        for batch in _batches(good, batch_size):
            _evaluate_batch(models, batch, want, errors)
            bar.update(len(batch))
