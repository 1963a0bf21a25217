"""Model I/O for the inference entry points (calculator, predict, evaluate, engine adapters).

One place that resolves the device and dtype, makes the private eval-mode copy of a model, and
reports what the model is: the elements it covers, the unit of its output and the factors to ASE
units, and whether it is an energy model (a potential that may drive the calculator and MD).

    >>> model, info = prepare_model("default", resolve_device(None), resolve_dtype("float64"))
    >>> info.output_key, info.output_unit, info.is_energy_model     # ('energy', 'eV', True)
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch
from torch import nn

from visnet.accel.export import is_exported_file
from visnet.accel.exported import ExportedViSNet, load_exported
from visnet.devices import resolve_device, resolve_dtype
from visnet.io.model_files import load_model, model_elements, model_metadata
from visnet.units import UnitConversion, energy_unit, is_energy_unit

__all__ = [
    "ModelInfo",
    "ModelLike",
    "describe_model",
    "model_elements",
    "output_unit",
    "prepare_model",
    "require_energy_model",
    "resolve_device",
    "resolve_dtype",
]

ModelLike = nn.Module | str | os.PathLike


@dataclass(frozen=True)
class ModelInfo:
    """What a model predicts and in which units.

    Attributes:
        label: model file, bundled-model name or class name (for messages).
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


def prepare_model(
    model: ModelLike, device: torch.device, dtype: torch.dtype | None, *, trust_package: bool = False
) -> tuple[nn.Module, ModelInfo]:
    """A private eval-mode copy of ``model`` on ``device`` in ``dtype`` and its description.

    Args:
        model: a ViSNet module (deep-copied: the caller's is untouched), a model file, an exported
            package (``.pt2``, ``visnet export``: loaded as ``visnet.accel.exported.ExportedViSNet``,
            which computes in its exported dtype) or a bundled-model name (loaded).
        device: where the copy lives; dtype: its floating dtype (None: as saved / as given).
        trust_package: load an exported package not built on this machine (it runs native code;
            see ``visnet.accel.exported.load_exported``).

    Raises:
        TypeError: ``model`` is neither a module nor a path/name.
        ValueError: the metadata records unknown units or elements; a package (recognised by its
            contents, whatever its name) written by another torch version or for another device
            (``visnet.accel.export.ExportError``), or not built here without ``trust_package``.
    """
    if isinstance(model, (str, os.PathLike)) and is_exported_file(model):
        module, label = load_exported(model, device=device, dtype=dtype, trust_package=trust_package), str(model)
    elif isinstance(model, (str, os.PathLike)):
        module, label = load_model(model, device=device, dtype=dtype), str(model)
    elif isinstance(model, ExportedViSNet):
        module, label = model.for_inputs(device, dtype), model.label
    elif isinstance(model, nn.Module):
        module, label = copy.deepcopy(model).to(device=device, dtype=dtype), type(model).__name__
    else:
        raise TypeError(f"model must be a ViSNet module or a path/name, got {type(model).__name__}")
    module = module.eval().requires_grad_(False)
    return module, describe_model(module, label)


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
        vector_output=bool(model.output_model.vector_valued) and not per_atom,
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
