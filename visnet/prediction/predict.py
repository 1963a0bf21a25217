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

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms
from torch import Tensor

from visnet.accel.auto import AutoViSNet
from visnet.inference.calculator import NonFiniteResultError
from visnet.prediction.inputs import PendingStructure, as_list, check_structures, fail_structure, read_inputs
from visnet.prediction.property_models import PropertyModel, load_property_models, select_models
from visnet.prediction.relax import relax_structures, relaxation_model
from visnet.prediction.results import Prediction
from visnet.structures.batching import batch_inputs, find_faulty, split_outputs

__all__ = ["PropertyModel", "evaluate_batch", "load_property_models", "make_result", "predict"]

DEFAULT_BATCH_SIZE = 64
# Inputs from which the progress bar shows when ``progress=None``.
PROGRESS_MIN_STRUCTURES = 100
ERROR_MODES = ("raise", "skip")
# What a model call raises for a structure at fault (coincident atoms, non-finite outputs).
_MODEL_ERRORS = (ValueError, FloatingPointError)


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


def evaluate_batch(models: list[PropertyModel], batch: list[PendingStructure], want: set[str], errors: str) -> None:
    """Fill ``s.info["properties"]`` for the batch. On failure: with errors="raise" name the
    structure at fault (``visnet.structures.batching.find_faulty``); with "skip" evaluate the structures one
    by one and record the error of each that fails."""
    try:
        values = _evaluate(models, [s.atoms for s in batch], want)
    except _MODEL_ERRORS as err:
        if len(batch) == 1:
            fail_structure(batch[0], err, errors)
        elif errors == "raise":
            run_one = lambda s: _evaluate(models, [s.atoms], want)  # noqa: E731
            raise find_faulty(batch, run_one, err, lambda _, s: s.label, catch=_MODEL_ERRORS) from None
        else:
            for s in batch:
                evaluate_batch(models, [s], want, errors)
        return
    for s, props in zip(batch, values):
        s.info["properties"] = props


def _batches(items: list[PendingStructure], size: int) -> Iterator[list[PendingStructure]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def make_result(index: int, s: PendingStructure, units: dict[str, str]) -> Prediction:
    """The ``Prediction`` of structure ``s`` (result ``index``; ``units``: property -> unit)."""
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
    compile: bool = False,
    trust_package: bool = False,
    accel: str = "auto",
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
        relax_fmax: the force (eV/Å) at which a relaxation stops.
        relax_steps: the most BFGS steps of a relaxation.
        seed: RDKit embedding seed for SMILES (same seed, same geometry, same prediction).
        progress: show tqdm progress bars (None: when there are 100+ structures).
        compile: the same as ``accel="compile"`` (kept for existing code). Default False.
        trust_package: load exported packages (``.pt2``) that were not built on this machine:
            a package holds native code that runs when it is loaded (like
            ``torch.load(weights_only=False)``); only for packages from a source you trust.
        accel: "auto" (default: energy models run eagerly, then from their exported package once
            it is ready, built in the background when the prediction is long enough; see
            ``visnet.accel.auto``), "eager", "compile" or "export" (build the package now).

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

    Example:
        ```python
        import visnet

        results = visnet.predict(["CCO", "c1ccccc1O"], model="qm9")   # SMILES -> QM9 property models
        print(results[0]["gap"], results[0].units["gap"])              # eV
        visnet.write_csv(results, "results.csv")
        ```
    """
    if errors not in ERROR_MODES:
        raise ValueError(f"errors must be one of {ERROR_MODES}, got {errors!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    items = as_list(inputs)
    if not items:
        return []
    models, want = select_models(load_property_models(model, device, dtype, trust_package, compile, accel), properties)
    structures = read_inputs(items, seed, errors, _show(progress, len(items)))
    check_structures(structures, frozenset.intersection(*(m.elements for m in models)), errors)
    show = _show(progress, len(structures))
    if relax:
        relax_structures(structures, relaxation_model(models), relax_fmax, relax_steps, errors, show)
    _announce_calls(models, sum(s.error is None for s in structures), batch_size)
    _predict_all(models, structures, want, batch_size, errors, show)
    units = {name: spec.unit for m in models for name, spec in m.outputs.items()}
    return [make_result(k, s, units) for k, s in enumerate(structures)]


def _announce_calls(models: list[PropertyModel], count: int, batch_size: int) -> None:
    """Tell ``accel="auto"`` models how many batches are coming (they judge whether a package pays)."""
    for m in models:
        if isinstance(m.model, AutoViSNet):
            m.model.expect_calls(-(-count // batch_size))


def _show(progress: bool | None, count: int) -> bool:
    return count >= PROGRESS_MIN_STRUCTURES if progress is None else bool(progress)


def _predict_all(
    models: list[PropertyModel],
    structures: list[PendingStructure],
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
            evaluate_batch(models, batch, want, errors)
            bar.update(len(batch))
