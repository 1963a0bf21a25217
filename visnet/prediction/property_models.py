"""Models for ``visnet.predict``: the private copies of the named models and what each reports.

A model argument may be a ViSNet, a file, a bundled model, a bundle ("qm9": one model per
property) or a list of these; every property is reported in ``visnet.units.reporting_unit``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visnet.inference.resolve import ModelInfo, ModelLike, prepare_model, resolve_device, resolve_dtype
from visnet.io.bundles import bundle_members, bundle_path
from visnet.units import reporting_unit

__all__ = ["Output", "PropertyModel", "load_property_models", "model_outputs", "select_models"]


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
        info: what it predicts, its units and elements (``visnet.inference.resolve.ModelInfo``).
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
    model: Any = "default",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float64",
    trust_package: bool = False,
) -> list[PropertyModel]:
    """The models named by ``model`` (see ``predict``), ready for prediction.

    Raises:
        ValueError: two models predict the same property, or a model records no output unit.
        FileNotFoundError: a model file (or a bundle's member) is missing.
    """
    device, dtype = resolve_device(device), resolve_dtype(dtype)
    models, owner = [], {}
    for label, spec, entry in _model_specs(model):
        module, info = prepare_model(spec, device, dtype, trust_package=trust_package)
        info = replace(info, label=label)
        outputs = model_outputs(info)
        for name in outputs:
            if name in owner:
                raise ValueError(f"models {owner[name]!r} and {label!r} both predict {name!r}; use one of them")
            owner[name] = label
        models.append(PropertyModel(module, info, outputs, dict(entry)))
    return models


def select_models(
    models: list[PropertyModel], properties: Sequence[str] | None
) -> tuple[list[PropertyModel], set[str]]:
    """The models needed for ``properties`` (None: all) and the set of wanted property names."""
    available = [name for m in models for name in m.outputs]
    if properties is None:
        return models, set(available)
    wanted = [properties] if isinstance(properties, str) else list(properties)
    unknown = [p for p in wanted if p not in available]
    if unknown:
        raise ValueError(f"unknown properties {unknown}: the model(s) predict {available}")
    return [m for m in models if set(m.outputs) & set(wanted)], set(wanted)
