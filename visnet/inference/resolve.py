"""The one model resolver: any model spec → runnable models on a device and dtype.

A model spec is ``"default"`` (or another bundled model name), a model file (``.pt``, ``.ckpt``),
an exported package (``.pt2``), a run folder (``member_k/model.pt``: a committee), a bundle
(``"qm9"`` or a manifest ``.json``: one model per property), a ViSNet module, or a list of these.
``resolve_models`` expands committees and bundles once, resolves the device and dtype, makes the
private eval-mode copy of each model, describes it (``ModelInfo``: elements, units, whether it is
an energy model) and, on request, refuses non-energy models and compiles. Every entry point (the
calculator, ``visnet.predict``, ``visnet md``, ``visnet evaluate``, OpenMM, TorchSim) calls it.

    >>> (default,) = resolve_models("default", device="cpu", dtype="float64")
    >>> default.info.output_key, default.info.output_unit, default.info.is_energy_model  # ('energy', 'eV', True)
"""

from __future__ import annotations

import copy
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visnet.accel.auto import AutoViSNet, FastPathWarning, exportable
from visnet.accel.build import build_now
from visnet.accel.cache import FastPathCache, cache_key
from visnet.accel.compile import compile_available, compile_model
from visnet.accel.export import is_exported_file
from visnet.accel.exported import ExportedViSNet, load_exported
from visnet.devices import resolve_device, resolve_dtype
from visnet.inference.committee import expand_committee
from visnet.io.bundles import bundle_members, bundle_path
from visnet.io.model_files import load_model, model_elements, model_metadata
from visnet.model.interface import model_form
from visnet.units import UnitConversion, energy_unit, is_energy_unit

__all__ = [
    "ACCEL_CHOICES",
    "ModelInfo",
    "ModelLike",
    "ModelSpec",
    "ResolvedModel",
    "describe_model",
    "model_elements",
    "output_unit",
    "prepare_model",
    "require_energy_model",
    "resolve_device",
    "resolve_dtype",
    "resolve_model",
    "resolve_models",
    "resolve_placement",
    "resolve_accel",
]

# The forms a model may run in (``accel=``): "auto" the exported package when it pays (built in
# the background, see ``visnet.accel.auto``), "eager" the module itself, "compile" torch.compile,
# "export" the exported package now (built in the foreground when missing).
ACCEL_CHOICES = ("auto", "eager", "compile", "export")

ModelLike = nn.Module | str | os.PathLike
ModelSpec = ModelLike | Sequence[ModelLike]


@dataclass(frozen=True)
class ModelInfo:
    """What a model predicts and in which units.

    Attributes:
        label: model file, bundled-model name, bundle member ("qm9:U0") or class name (for messages).
        output_key: key of the head's output in the model's result dict ("energy", "gap", ...).
        output_unit: unit of that output as the model file records it ("eV", "kcal/mol", "D", ...).
        units: factors to ASE units; ``units.energy`` is eV per output unit for outputs in an
            energy unit (1.0 otherwise), ``units.length`` Å per model length unit.
        elements: atomic numbers the model may be used for.
        per_atom: the main output is per atom ((N, 3) for the vector head), not per molecule.
        vector_output: a per-molecule head that also returns the molecular vector "<key>_vector".
        is_energy_model: a potential (``model.predicts_energy``, in an energy unit): the only kind
            that may drive the calculator and MD.
        has_forces: an energy model that computes forces by autograd (``derivative``).
    """

    label: str
    output_key: str
    output_unit: str
    units: UnitConversion
    elements: frozenset[int]
    per_atom: bool
    vector_output: bool
    is_energy_model: bool
    has_forces: bool


@dataclass(frozen=True)
class ResolvedModel:
    """One runnable model of a spec.

    Attributes:
        model: a private eval-mode copy (parameters frozen), compiled when asked for.
        info: what it predicts, its units and elements.
        device: where it runs; dtype: the floating dtype of the positions it takes.
        entry: the bundle manifest entry (unit, test MAE, ...) of a bundle member, else {}.
    """

    model: nn.Module
    info: ModelInfo
    device: torch.device
    dtype: torch.dtype
    entry: dict[str, Any] = field(default_factory=dict)

    @property
    def units(self) -> UnitConversion:
        """Factors from the model's units to eV and Å (``info.units``)."""
        return self.info.units

    @property
    def elements(self) -> frozenset[int]:
        """Atomic numbers the model may be used for (``info.elements``)."""
        return self.info.elements


@dataclass(frozen=True)
class _Entry:
    """One model of an expanded spec: a module or file, its label override and manifest entry."""

    model: ModelLike
    label: str | None = None
    entry: dict[str, Any] = field(default_factory=dict)


def resolve_placement(
    device: str | torch.device | None, dtype: str | torch.dtype | None
) -> tuple[torch.device, torch.dtype | None]:
    """``device`` (None/"auto": CUDA when available) and ``dtype`` (None: as saved) as torch objects.

    Raises:
        ValueError: a device this machine lacks or an unknown device name
            (``visnet.devices.resolve_device``); a dtype other than float32/float64.
    """
    return resolve_device(device), None if dtype is None else resolve_dtype(dtype)


def resolve_models(
    spec: ModelSpec = "default",
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    compile: bool = False,
    trust_package: bool = False,
    purpose: str | None = None,
    accel: str | None = None,
) -> list[ResolvedModel]:
    """The runnable models ``spec`` names, in order (a committee or bundle gives several).

    Args:
        spec: ``"default"``, a model file, a ``.pt2`` package, a run folder (its ``model.pt`` or
            its ``member_k/model.pt`` committee), a bundle name or manifest (one model per
            property, labelled "<bundle>:<property>"), a ViSNet module (deep-copied: the caller's
            is untouched), or a list of these (flattened).
        device: where the models run (None/"auto": CUDA when available).
        dtype: "float32"/"float64" or a torch dtype; None: as saved. An exported package computes
            in its exported dtype and converts inputs and outputs.
        compile: the same as ``accel="compile"`` (kept for existing code).
        trust_package: load exported packages not built on this machine (they run native code;
            see ``visnet.accel.exported.load_exported``).
        purpose: what needs an energy model (e.g. "the calculator (and MD)"); a model that
            predicts anything else is then refused naming its property.
        accel: the form each model runs in (``ACCEL_CHOICES``; None: "eager", or "compile" with
            ``compile=True``). "auto" wraps each exportable energy model in
            ``visnet.accel.auto.AutoViSNet`` (eager until its exported package is ready; the entry
            points' default); "compile" runs ``visnet.compile_model``; "export" loads the cached
            package, building it first when missing (a minute or so). Property models, models
            that cannot be exported and exported packages run as they are; any fault of the
            fast path leaves the model eager with one ``FastPathWarning``.

    Raises:
        ValueError: a bad device or dtype; an empty list; a run folder without models; invalid
            model files or metadata; a non-energy model when ``purpose`` is given.
        FileNotFoundError: a missing model file, bundled model or bundle member.
        TypeError: ``spec`` is neither a module, a path/name nor a list of them.
    """
    accel = resolve_accel(accel, compile)
    device, dtype = resolve_placement(device, dtype)
    resolved = []
    for entry in _entries(spec):
        item = _load(entry, device, dtype, trust_package)
        if purpose is not None:
            require_energy_model(item.info, purpose)
        resolved.append(_accelerate(item, accel))
    return resolved


def resolve_accel(accel: str | None, compile: bool = False) -> str:
    """The form asked for: ``accel`` checked against ``ACCEL_CHOICES`` (None: "eager"), with the
    older ``compile=True`` meaning "compile".

    Raises:
        ValueError: an unknown ``accel``, or ``compile=True`` with accel "eager" or "export".
    """
    if accel is not None and accel not in ACCEL_CHOICES:
        raise ValueError(f"accel must be one of {', '.join(ACCEL_CHOICES)}; got {accel!r}")
    if compile:
        if accel in ("eager", "export"):
            raise ValueError(f"compile=True contradicts accel={accel!r}: give one of them (accel='compile')")
        return "compile"
    return accel or "eager"


def _accelerate(item: ResolvedModel, accel: str) -> ResolvedModel:
    """``item`` in the form ``accel`` asks for (see ``resolve_models``)."""
    if accel == "compile":  # an exported package is kept, with compile_model's one warning
        return replace(item, model=compile_model(item.model))
    if accel == "eager" or model_form(item.model) != "eager":
        return item  # an exported package is already the fastest form
    if not exportable(item.model) or not item.info.is_energy_model:
        return item
    if accel == "auto":
        return replace(item, model=AutoViSNet(item.model, item.info.label))
    return replace(item, model=_exported_now(item.model, item.info.label))


def _exported_now(model: nn.Module, label: str) -> nn.Module:
    """``model``'s cached package, built in this process when missing; ``model`` itself (with one
    ``FastPathWarning``) when it cannot be built or loaded."""
    cache, key = FastPathCache(), cache_key(model)
    try:
        package = cache.lookup(key)
        if package is None:
            ok, reason = compile_available(model.device)
            if not ok:
                raise RuntimeError(reason)
            print(f"visnet: exporting {label} to the cache (a minute or so, once)", file=sys.stderr)
            outcome = build_now(cache, key, model, label)
            package = cache.lookup(key)
            if package is None:
                raise RuntimeError(outcome.reason or f"the build ended {outcome.status} without a package")
        return load_exported(package, device=model.device, dtype=model.dtype)
    except Exception as err:  # a fault of the fast path never fails the run
        reason = " ".join(f"{type(err).__name__}: {err}".split())[:400]
        warnings.warn(
            f"visnet: no exported package for {label} ({reason}); it runs eagerly", FastPathWarning, stacklevel=4
        )
        return model


def resolve_model(spec: ModelSpec = "default", **options: Any) -> ResolvedModel:
    """The one runnable model ``spec`` names (``resolve_models``' arguments and errors).

    Raises:
        ValueError: ``spec`` names several models (a committee or bundle).
    """
    resolved = resolve_models(spec, **options)
    if len(resolved) != 1:
        labels = ", ".join(r.info.label for r in resolved)
        raise ValueError(f"{_spec_label(spec)} names {len(resolved)} models ({labels}); give one model file")
    return resolved[0]


def prepare_model(
    model: ModelLike, device: torch.device, dtype: torch.dtype | None, *, trust_package: bool = False
) -> tuple[nn.Module, ModelInfo]:
    """The private eval-mode copy of one ``model`` and its description (``resolve_model``)."""
    resolved = resolve_model(model, device=device, dtype=dtype, trust_package=trust_package)
    return resolved.model, resolved.info


def _entries(spec: ModelSpec) -> list[_Entry]:
    """``spec`` expanded: lists flattened, run folders into their members, bundles into theirs."""
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ValueError("model: the list of models is empty (a committee needs at least one model)")
        return [entry for item in spec for entry in _entries(item)]
    if isinstance(spec, nn.Module):
        return [_Entry(spec)]
    if isinstance(spec, (str, os.PathLike)):
        manifest = bundle_path(spec)
        if manifest is None:
            return [_Entry(member) for member in expand_committee([spec])]
        name = Path(manifest).stem
        return [_Entry(file, f"{name}:{prop}", dict(entry)) for prop, file, entry in bundle_members(manifest)]
    raise TypeError(
        "model must be a ViSNet module, a model file, a bundled model/bundle name, a run folder or a list "
        f"of them; got {type(spec).__name__}"
    )


def _load(entry: _Entry, device: torch.device, dtype: torch.dtype | None, trust_package: bool) -> ResolvedModel:
    """The private eval-mode copy of one expanded model on ``device`` in ``dtype``."""
    model = entry.model
    if isinstance(model, (str, os.PathLike)) and is_exported_file(model):
        module = load_exported(model, device=device, dtype=dtype, trust_package=trust_package)
    elif isinstance(model, (str, os.PathLike)):
        module = load_model(model, device=device, dtype=dtype)
    elif isinstance(model, ExportedViSNet):
        module = model.for_inputs(device, dtype)
    elif isinstance(model, AutoViSNet):  # resolved before (e.g. handed on by visnet.predict): its weights
        module = copy.deepcopy(model.eager_model).to(device=device, dtype=dtype)
    else:
        module = copy.deepcopy(model).to(device=device, dtype=dtype)
    module = module.eval().requires_grad_(False)
    info = describe_model(module, entry.label or _spec_label(model))
    return ResolvedModel(module, info, device, dtype or module.dtype, entry.entry)


def _spec_label(spec: Any) -> str:
    """A spec's name in messages: the file or name as given, a module's class name."""
    if isinstance(spec, (ExportedViSNet, AutoViSNet)):
        return spec.label
    return type(spec).__name__ if isinstance(spec, nn.Module) else str(spec)


def describe_model(model: nn.Module, label: str) -> ModelInfo:
    """The ``ModelInfo`` of a ViSNet ``model`` (read from its head's protocol and its metadata)."""
    units = model_metadata(model).get("units") or {}
    stored = output_unit(model, label)
    length = UnitConversion.from_metadata({"length": units.get("length", "Å")}).length
    in_energy_unit = is_energy_unit(stored)
    energy = UnitConversion.from_metadata({"energy": stored}).energy if in_energy_unit else 1.0
    is_energy = bool(model.predicts_energy) and in_energy_unit
    per_atom = bool(model.per_atom_output)
    return ModelInfo(
        label=label,
        output_key=model.output_key,
        output_unit=stored,
        units=UnitConversion(energy=energy, length=length),
        elements=model_elements(model),
        per_atom=per_atom,
        vector_output=bool(model.vector_output) and not per_atom,
        is_energy_model=is_energy,
        has_forces=is_energy and bool(model.derivative),
    )


def output_unit(model: nn.Module, label: str) -> str:
    """Unit of the model's main output as recorded in its metadata (bare energy models: eV).

    Raises:
        ValueError: a non-energy output without a recorded unit, or an unknown energy unit.
    """
    units = model_metadata(model).get("units") or {}
    key = model.output_key
    if key == "energy" or "energy" in units:
        energy = energy_unit(units.get("energy", "eV"))  # validates the recorded energy unit
        if key == "energy":
            return energy
    if key in units:
        return str(units[key])
    raise ValueError(
        f"{label}: the model's metadata records no unit for its output {key!r}; save it with "
        f"visnet.save_model(model, path, units={{{key!r}: ..., 'length': 'Å'}})"
    )


def require_energy_model(info: ModelInfo, purpose: str) -> None:
    """Raise ValueError naming the model's property unless ``info`` describes an energy model."""
    if not info.is_energy_model:
        raise ValueError(
            f"{info.label}: {purpose} needs an energy model (a potential); this model predicts "
            f"{info.output_key!r} ({info.output_unit}{', per atom' if info.per_atom else ''})"
        )
