"""What the engine adapters share: loading a model for an engine and the element check.

Every engine adapter takes the same model spec as ``ViSNetCalculator`` (``"default"``, a model
file, an exported package, a ViSNet module) and loads it with ``load_engine_model``: the one
resolver (``visnet.inference.resolve.resolve_model``) for an energy model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ase.data import chemical_symbols

from visnet.inference.resolve import ModelSpec, ResolvedModel, resolve_model

__all__ = ["ENGINE_PURPOSE", "check_species", "load_engine_model"]

ENGINE_PURPOSE = "an MD engine"


def load_engine_model(
    model: ModelSpec = "default",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float64",
    trust_package: bool = False,
    accel: str = "auto",
) -> ResolvedModel:
    """``model`` resolved for an MD engine on ``device`` in ``dtype`` (``trust_package``: load an
    exported package not built on this machine; it runs native code; ``accel``: the model's form,
    "auto" by default: eager, then its exported package once ready — see ``resolve_models``).

    Raises:
        ValueError: the model is a property model (not a potential), names several models, or
            its metadata is invalid; a bad device or dtype.
    """
    return resolve_model(
        model, device=device, dtype=dtype, trust_package=trust_package, purpose=ENGINE_PURPOSE, accel=accel
    )


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
