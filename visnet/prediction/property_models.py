"""Models for ``visnet.predict``: the private copies of the named models and what each reports.

A model argument may be a ViSNet, a file, a bundled model, a bundle ("qm9": one model per
property) or a list of these; every property is reported in ``visnet.units.reporting_unit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from visnet.inference.resolve import ModelInfo, ModelSpec, resolve_models
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


def load_property_models(
    model: ModelSpec = "default",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float64",
    trust_package: bool = False,
    compile: bool = False,
    accel: str | None = None,
) -> list[PropertyModel]:
    """The models named by ``model`` (see ``predict``; ``visnet.inference.resolve.resolve_models``
    expands bundles, run folders and lists), ready for prediction.

    Raises:
        ValueError: two models predict the same property, or a model records no output unit.
        FileNotFoundError: a model file (or a bundle's member) is missing.
    """
    models, owner = [], {}
    resolved_models = resolve_models(
        model, device=device, dtype=dtype, compile=compile, trust_package=trust_package, accel=accel
    )
    for resolved in resolved_models:
        label, outputs = resolved.info.label, model_outputs(resolved.info)
        for name in outputs:
            if name in owner:
                raise ValueError(f"models {owner[name]!r} and {label!r} both predict {name!r}; use one of them")
            owner[name] = label
        models.append(PropertyModel(resolved.model, resolved.info, outputs, dict(resolved.entry)))
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
