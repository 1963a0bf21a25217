"""Model files: ``save_model`` / ``load_model`` (plain dicts read with ``weights_only=True``) and
``from_pyg``, the importer of PyG ``ViSNet`` weights."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visnet.atomic import atomic_open
from visnet.model import ViSNet

FORMAT = "visnet-model"
FORMAT_VERSION = 1
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
# Units assumed for a model without metadata (DESIGN: a bare model is in eV and Å).
DEFAULT_UNITS = {"energy": "eV", "length": "Å"}


def _package_version() -> str:
    from visnet import __version__

    return __version__


def model_metadata(model: nn.Module) -> dict[str, Any]:
    """The metadata attached to ``model`` (units, training data, …), default units if none."""
    meta = dict(getattr(model, "metadata", None) or {})
    meta.setdefault("units", dict(DEFAULT_UNITS))
    return meta


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically (see ``visnet.atomic``)."""
    with atomic_open(path) as handle:
        torch.save(obj, handle)
    return Path(path)


def save_model(model: ViSNet, path: str | os.PathLike, **metadata: Any) -> Path:
    """Write ``model`` as a plain-dict file (atomically).

    Args:
        model: the ViSNet to save.
        path: destination file (conventionally ``.pt``).
        **metadata: merged over ``model.metadata``; e.g. ``units={"energy": "kcal/mol",
            "length": "Å"}``, ``training_data=...``. Cutoff, dtype and package version are added.

    Returns:
        The path written.
    """
    meta = model_metadata(model)
    meta.update(metadata)
    meta.update(cutoff=model.cutoff, dtype=str(model.dtype).removeprefix("torch."), visnet_version=_package_version())
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "hyperparameters": dict(model.hparams),
        "state_dict": state,
        "metadata": meta,
    }
    return atomic_save(payload, path)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The top-level dict of a model file or Lightning checkpoint, read with ``weights_only=True``.

    Raises:
        FileNotFoundError: no such file. ValueError: a folder, a corrupted or truncated file,
            pickled code (refused without running it), or a top level that is not a dict.
    """
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a model file (a run folder holds model.pt)")
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or carrying pickled code
        raise ValueError(
            f"cannot read model file {path}: it is corrupted, truncated, or holds objects that are not plain "
            f"tensors/containers (refused for safety; weights_only=True). Cause: {type(err).__name__}: {str(err)[:200]}"
        ) from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path} is not a ViSNet model file (top level is {type(payload).__name__}, not a dict)")
    return payload


def _from_lightning(payload: dict[str, Any], path: Path) -> tuple[Any, Any, Any]:
    hyper = payload.get("hyper_parameters")
    hparams = hyper.get("model_hparams") if isinstance(hyper, dict) else None
    if not isinstance(hparams, dict):
        raise ValueError(f"{path} is a Lightning checkpoint but not one written by `visnet fit` (no model_hparams)")
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise ValueError(f"{path} is a Lightning checkpoint without a state_dict")
    prefix = "model."
    state = {k[len(prefix) :]: v for k, v in state.items() if isinstance(k, str) and k.startswith(prefix)}
    return hparams, state, hyper.get("metadata") or {}


def _check_parts(hparams: Any, state: Any, meta: Any, path: Path) -> torch.dtype:
    """Types of the stored parts (crafted or foreign files fail here, naming the part); the saved dtype."""
    for name, value in (("hyperparameters", hparams), ("state_dict", state), ("metadata", meta)):
        if not isinstance(value, dict):
            raise ValueError(f"{path}: its {name} is a {type(value).__name__}, not a dict: not a ViSNet model file")
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{path}: state_dict entries {not_tensors[:5]} are not tensors")
    if not isinstance(meta.get("units", {}), dict):
        raise ValueError(f"{path}: metadata 'units' must be a dict like {DEFAULT_UNITS}, got {meta['units']!r}")
    return _float_dtype(meta.get("dtype", "float32"), f"{path}: metadata 'dtype'")


def _float_dtype(dtype: Any, what: str) -> torch.dtype:
    """torch.float32/float64 from a dtype or its name; ValueError for anything else."""
    resolved = getattr(torch, dtype.removeprefix("torch."), None) if isinstance(dtype, str) else dtype
    if resolved not in (torch.float32, torch.float64):
        raise ValueError(f"{what} must be float32 or float64, got {dtype!r}")
    return resolved


def _build(hparams: dict[str, Any], state: dict[str, Any], dtype: torch.dtype, path: Path) -> ViSNet:
    """The model of ``hparams`` with the weights of ``state``, every failure a ValueError naming ``path``."""
    try:
        model = ViSNet(**hparams).to(dtype)  # before loading, so float64 weights are not rounded
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: invalid stored hyperparameters: {str(err)[:300]}") from None
    try:
        model.load_state_dict(state, strict=True)
    except (TypeError, RuntimeError) as err:
        raise ValueError(f"{path}: weights do not match the stored hyperparameters: {str(err)[:300]}") from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"{path}: non-finite (NaN/inf) weights in {bad[:5]}: the run that wrote it diverged")
    return model


def _resolve(path: str | os.PathLike) -> Path:
    name = str(path)
    if os.sep not in name and not name.endswith((".pt", ".ckpt")):
        bundled = PRETRAINED_DIR / f"{name}.pt"
        if bundled.is_file():
            return bundled
        available = sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt"))
        if not Path(name).exists():
            raise FileNotFoundError(f"no bundled model named {name!r}; bundled models: {available}")
    return Path(path)


def load_model(
    path: str | os.PathLike, device: str | torch.device | None = None, dtype: torch.dtype | str | None = None
) -> ViSNet:
    """Load a model file written by ``save_model`` (or a ``.ckpt`` written by ``visnet fit``).

    Args:
        path: file path, or the name of a bundled model (``"default"``).
        device: where to put the model (default CPU).
        dtype: torch dtype or its name ("float32"/"float64"); default: as saved.

    Returns:
        The model in eval mode with ``model.metadata`` (units, cutoff, training data, …).

    Raises:
        FileNotFoundError: no such file or bundled model.
        ValueError: corrupted/truncated file, pickled code, a file of another kind or of
            another model, non-finite weights, or a ``dtype`` other than float32/float64.
    """
    path = _resolve(path)
    dtype = None if dtype is None else _float_dtype(dtype, "dtype")
    payload = read_checkpoint(path)
    if "pytorch-lightning_version" in payload:
        hparams, state, meta = _from_lightning(payload, path)
    elif payload.get("format") == FORMAT:
        hparams, state, meta = payload.get("hyperparameters"), payload.get("state_dict"), payload.get("metadata") or {}
    else:
        raise ValueError(f"{path} is not a ViSNet model file (keys: {sorted(map(str, payload))[:8]})")
    saved_dtype = _check_parts(hparams, state, meta, path)
    model = _build(hparams, state, saved_dtype, path)
    model.metadata = dict(meta)
    model = model.to(device=device or "cpu", dtype=dtype or saved_dtype)
    return model.eval()


def from_pyg(pyg_model: nn.Module) -> ViSNet:
    """Import the weights of a ``torch_geometric.nn.models.ViSNet``.

    The result reproduces PyG's energies and forces on the same inputs (``vector_cutoff`` and
    ``isolated_atom_reference`` are off and ``vector_norm_eps`` is 0, as in the reference; its
    ``derivative`` is kept). Set ``model.hparams``-compatible smoothing by rebuilding with
    ``vector_norm_eps > 0`` if the imported model must be smooth at symmetric structures. Our
    neighbour list never truncates, so results match as long as no atom of the input has more
    than PyG's ``max_num_neighbors`` neighbours.
    """
    rep = pyg_model.representation_model
    layer_types = {type(layer).__name__ for layer in rep.vis_mp_layers}
    model = ViSNet(
        lmax=rep.lmax,
        vecnorm_type=rep.vecnorm_type,
        trainable_vecnorm=rep.trainable_vecnorm,
        num_heads=rep.num_heads,
        num_layers=rep.num_layers,
        hidden_channels=rep.hidden_channels,
        num_rbf=rep.num_rbf,
        trainable_rbf=rep.trainable_rbf,
        max_z=rep.max_z,
        cutoff=rep.cutoff,
        vertex="ViS_MP_Vertex" in layer_types,
        reduce_op=pyg_model.reduce_op,
        mean=float(pyg_model.mean),
        std=float(pyg_model.std),
        derivative=bool(pyg_model.derivative),
        vector_cutoff=False,
        isolated_atom_reference=False,
        vector_norm_eps=0.0,
    )
    ref = next(pyg_model.parameters())
    model = model.to(dtype=ref.dtype, device=ref.device)
    model.load_state_dict(pyg_model.state_dict(), strict=True)
    model.metadata = {"units": dict(DEFAULT_UNITS), "source": "imported from torch_geometric ViSNet"}
    return model
