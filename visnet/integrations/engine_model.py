"""Loading a ViSNet model for an MD engine: device, dtype, units and the elements it covers.

Every engine adapter takes the same model spec as ``ViSNetCalculator``: ``"default"`` (the bundled
model), a path to a model file, or a ``ViSNet`` module (copied, the caller's is left untouched).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from ase.data import chemical_symbols
from torch import nn

from visnet.inference.resolve import prepare_model, require_energy_model, resolve_device, resolve_dtype
from visnet.units import UnitConversion

ModelSpec = str | os.PathLike | nn.Module


@dataclass(frozen=True)
class EngineModel:
    """A ViSNet energy model ready for inference in an engine.

    Attributes:
        model: eval-mode copy on ``device`` in ``dtype``, parameters frozen.
        units: factors from the model's units to eV and Å.
        elements: atomic numbers the model may be used for.
        device: where it runs.
        dtype: its floating-point type.
    """

    model: nn.Module
    units: UnitConversion
    elements: frozenset[int]
    device: torch.device
    dtype: torch.dtype


def load_engine_model(
    model: ModelSpec = "default",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float64",
    trust_package: bool = False,
) -> EngineModel:
    """Load ``model`` ("default", a path, or a ViSNet module) for inference on ``device`` in ``dtype``
    (``trust_package``: load an exported package not built on this machine; it runs native code).

    Raises:
        ValueError: the model is a property model (not a potential), or its metadata is invalid.
    """
    device, dtype = resolve_device(device), resolve_dtype(dtype)
    net, info = prepare_model(model, device, dtype, trust_package=trust_package)
    require_energy_model(info, "an MD engine")
    return EngineModel(net, info.units, info.elements, device, dtype)


def check_species(numbers: Sequence[int], known: frozenset[int], names: Sequence[str] | None = None) -> None:
    """Raise ValueError naming the atoms whose element the model does not cover.

    Args:
        numbers: (N,) atomic numbers.
        known: atomic numbers the model covers.
        names: (N,) optional labels of the atoms (e.g. "Cl1 (LIG 1)"), used in the message.
    """
    bad = [i for i, z in enumerate(numbers) if int(z) not in known]
    if not bad:
        return
    label = names if names is not None else [f"atom {i}" for i in range(len(numbers))]
    shown = ", ".join(f"{label[i]}: {_symbol(int(numbers[i]))}" for i in bad[:10])
    more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    covered = ", ".join(_symbol(z) for z in sorted(known)) if len(known) <= 20 else f"Z {min(known)}..{max(known)}"
    raise ValueError(f"the model does not cover the element of {len(bad)} atom(s): {shown}{more}; it covers {covered}")


def _symbol(z: int) -> str:
    return chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z={z}"
