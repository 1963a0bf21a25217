"""Which device a model runs on: the one resolver every entry point uses (calculator, predict,
evaluate, MD, engines, ``load_model``, ``visnet export``), so a device this machine lacks is one
clear line everywhere instead of torch's ``AssertionError: Torch not compiled with CUDA enabled``."""

from __future__ import annotations

import torch

__all__ = ["resolve_device", "resolve_dtype"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch.device; None or "auto" gives CUDA when available, else the CPU.

    Raises:
        ValueError: a string torch does not parse (e.g. "gpu"), a device type other than cpu,
            cuda and mps, or a device this machine does not have (CUDA on a CPU-only torch,
            "cuda:7" with fewer GPUs, MPS off Apple silicon): one line saying which.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto', got {device!r}") from None
    missing = _missing_device(resolved)
    if missing:
        raise ValueError(f"device {str(device)!r}: {missing}; use device 'cpu' (or 'auto')")
    return resolved


def _missing_device(device: torch.device) -> str | None:
    """Why ``device`` cannot be used on this machine, or None when it can."""
    if device.type == "cpu":
        return None
    if device.type == "mps":
        return None if torch.backends.mps.is_available() else "this torch has no MPS device"
    if device.type != "cuda":
        return f"device type {device.type!r} is not supported (cpu, cuda, cuda:N, mps)"
    if torch.version.cuda is None and torch.version.hip is None:
        return f"this torch has no CUDA device: torch {torch.__version__} was built without CUDA"
    count = torch.cuda.device_count()
    if count == 0:
        return "this torch has no CUDA device: no GPU is visible (driver, CUDA_VISIBLE_DEVICES?)"
    if device.index is not None and device.index >= count:
        return f"this machine has {count} CUDA device(s): cuda:0..cuda:{count - 1}"
    return None


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``dtype`` ("float32", "float64", "torch.float64" or a torch dtype) as a floating torch dtype."""
    resolved = getattr(torch, dtype.removeprefix("torch."), None) if isinstance(dtype, str) else dtype
    if resolved not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return resolved
