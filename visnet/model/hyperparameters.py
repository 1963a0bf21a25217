"""ViSNet's hyperparameters: read once from its signature, checked before anything is allocated.

Bounds (a model file or a typo may not ask for more; the largest published ViSNet has 512 channels
and 9 layers, and 118 elements exist):
``MAX_HIDDEN_CHANNELS`` 4096, ``MAX_LAYERS`` 64, ``MAX_RBF`` 1024, ``MAX_HEADS`` 1024, ``MAX_Z`` 1000.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable
from typing import Any

import torch

MAX_HIDDEN_CHANNELS = 4096
MAX_LAYERS = 64
MAX_RBF = 1024
MAX_HEADS = 1024
MAX_Z = 1000
# Constructor arguments that are statistics of the training data, not architecture: they live in
# the model's buffers (``mean``, ``std``, ``prior_model.initial_atomref``) and travel in the state_dict.
STATISTICS = ("mean", "std", "atomref")
# Hyperparameters added after model files were first written, with the value those older files
# were trained with: a stored architecture without the key means this, whatever the default now.
LEGACY_HPARAMS = {"cutoff_type": "cosine"}
_BOUNDED_INTS = {
    "hidden_channels": (2, MAX_HIDDEN_CHANNELS),
    "num_layers": (1, MAX_LAYERS),
    "num_rbf": (1, MAX_RBF),
    "num_heads": (1, MAX_HEADS),
    "max_z": (2, MAX_Z),
}
_BOOLS = ("trainable_vecnorm", "trainable_rbf", "vertex", "derivative", "vector_cutoff", "isolated_atom_reference")
_CHOICES = {
    "reduce_op": ("sum", "mean"),
    "rbf_type": ("expnorm", "gauss"),
    "vecnorm_type": (None, "none", "max_min", "rms"),
    "cutoff_type": ("cosine", "polynomial"),
}


def signature_arguments(init: Callable[..., None], frame_locals: dict[str, Any]) -> dict[str, Any]:
    """The arguments of ``init`` (by its signature, ``self`` excluded) taken from its ``locals()``."""
    names = [n for n in inspect.signature(init).parameters if n != "self"]
    return {name: frame_locals[name] for name in names}


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def _check_number(name: str, value: Any, positive: bool = False, nonnegative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0) or (nonnegative and value < 0):
        kind = "a positive finite" if positive else "a non-negative finite" if nonnegative else "a finite"
        raise ValueError(f"{name} must be {kind} number, got {value}")
    return value


def check_hyperparameters(args: dict[str, Any]) -> dict[str, Any]:
    """Validate ViSNet's constructor arguments; the architecture (``STATISTICS`` left out), normalised.

    Raises:
        ValueError naming the first bad argument (type, range, choice, or inconsistency).
    """
    out = dict(args)
    for name, (low, high) in _BOUNDED_INTS.items():
        out[name] = _check_int(name, args[name], low, high)
    if isinstance(args["lmax"], bool) or args["lmax"] not in (1, 2):
        raise ValueError(f"lmax must be 1 or 2, got {args['lmax']!r}")
    if out["hidden_channels"] % out["num_heads"]:
        raise ValueError(
            f"hidden_channels ({out['hidden_channels']}) must be divisible by num_heads ({out['num_heads']})"
        )
    for name in _BOOLS:
        if not isinstance(args[name], bool):
            raise ValueError(f"{name} must be true or false, got {args[name]!r}")
    for name, choices in _CHOICES.items():
        if args[name] not in choices:
            raise ValueError(f"{name} must be one of {list(choices)}, got {args[name]!r}")
    out["cutoff"] = _check_number("cutoff", args["cutoff"], positive=True)
    out["vector_norm_eps"] = _check_number("vector_norm_eps", args["vector_norm_eps"], nonnegative=True)
    _check_number("mean", args["mean"])
    _check_number("std", args["std"])
    for name in ("output_head", "output_key"):
        if not isinstance(args[name], str) or not args[name]:
            raise ValueError(f"{name} must be a non-empty string, got {args[name]!r}")
    return {k: v for k, v in out.items() if k not in STATISTICS}


def with_legacy_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored architecture (model file, checkpoint) completed by ``LEGACY_HPARAMS`` where it lacks them."""
    return {**LEGACY_HPARAMS, **stored}


def check_atomref(atomref: Any, max_z: int) -> None:
    """An atomref must hold one finite value per element table entry: shape (max_z,) or (max_z, 1)."""
    if atomref is None:
        return
    values = torch.as_tensor(atomref, dtype=torch.float64)
    if values.numel() != max_z or values.dim() > 2 or (values.dim() == 2 and values.size(1) != 1):
        raise ValueError(
            f"atomref must have shape ({max_z},) (one value per entry up to max_z), got {tuple(values.shape)}"
        )
    if not bool(torch.isfinite(values).all()):
        raise ValueError("atomref has non-finite (NaN/inf) entries")
