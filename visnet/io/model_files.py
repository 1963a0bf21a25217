"""Model files: ``save_model`` / ``load_model`` (plain dicts read with ``weights_only=True``) and
``from_pyg``, the importer of PyG ``ViSNet`` weights."""

from __future__ import annotations

import datetime
import difflib
import enum
import importlib.metadata
import math
import numbers
import os
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from visnet.devices import resolve_device
from visnet.files.atomic import atomic_open
from visnet.io.packages import is_exported_file
from visnet.model import ViSNet
from visnet.model.hyperparameters import with_legacy_defaults
from visnet.model.interface import AtomisticModel, model_form
from visnet.model.interface import atomic_number as atomic_number  # its old home: kept importable
from visnet.units import UnitConversion

FORMAT = "visnet-model"
FORMAT_VERSION = 1
PRETRAINED_DIR = Path(str(resources.files("visnet"))) / "pretrained"
# Units assumed for a model without metadata (DESIGN: a bare model is in eV and Å).
DEFAULT_UNITS = {"energy": "eV", "length": "Å"}
# What a model file may ask for, checked before anything is allocated: its uncompressed contents
# (a paper-size float64 ViSNet, 512 channels and 9 layers, is ~0.2 GB), the parameters its
# hyperparameters declare (2**28: 1 GiB in float32), and the elements of one metadata array.
MAX_FILE_BYTES = 2 * 1024**3
MAX_PARAMETERS = 2**28
MAX_METADATA_ELEMENTS = 10**6


def package_version() -> str:
    try:
        return importlib.metadata.version("visnet")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def plain_metadata(value: Any, key: str = "metadata") -> Any:
    """``value`` as plain data a ``weights_only`` load accepts, at any depth.

    Exact built-in types are kept; subclasses and look-alikes become them: NumPy scalars, float/
    int/str subclasses (``np.float64``, ``np.str_``, ``np.longdouble``) and enums (their value)
    the plain number or string, paths and datetimes (``np.datetime64`` too) strings, tuples and
    arrays lists; tensors are detached, copied and moved to the CPU.

    Raises:
        ValueError: naming ``key`` (dotted for nested entries) for anything else (objects, sets,
            object arrays, non-string dict keys, a ``longdouble`` beyond float64) or an array of
            more than ``MAX_METADATA_ELEMENTS``.
    """
    if value is None or type(value) in (str, bool, int, float, complex, bytes):
        return value
    if isinstance(value, enum.Enum):
        return plain_metadata(value.value, key)
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return _plain_array(value, key)
    if isinstance(value, dict):
        return {_plain_key(k, key): plain_metadata(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_metadata(v, f"{key}[{i}]") for i, v in enumerate(value)]
    plain = _plain_scalar(value, key)
    if plain is _NOT_PLAIN:
        raise ValueError(
            f"metadata {key!r}: a value of type {type(value).__name__} cannot be stored in a model file "
            "(strings, numbers, booleans, None, lists, dicts, arrays and tensors can)"
        )
    return plain


_NOT_PLAIN = object()


def _plain_scalar(value: Any, key: str) -> Any:
    """The built-in str/bool/int/float/complex of a scalar look-alike, or ``_NOT_PLAIN``."""
    if isinstance(value, (str, os.PathLike)):
        return str.__str__(value) if isinstance(value, str) else os.fspath(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (np.datetime64, np.timedelta64, datetime.timedelta)):
        return str(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        plain = float(value)
        if math.isinf(plain) and not np.isinf(value):
            raise ValueError(f"metadata {key!r}: {value!r} is beyond the float64 range and cannot be stored")
        return plain
    if isinstance(value, numbers.Complex):
        return complex(value)
    return _NOT_PLAIN


def _plain_key(name: Any, key: str) -> str:
    """A dict key as a built-in str (``np.str_`` and other str subclasses converted)."""
    if isinstance(name, str):
        return str.__str__(name)
    raise ValueError(f"metadata {key!r}: keys must be strings, got {name!r} ({type(name).__name__})")


def _plain_array(value: np.ndarray | torch.Tensor, key: str) -> list | torch.Tensor:
    """A NumPy array as (nested) plain lists, a tensor as a detached CPU copy."""
    count = value.size if isinstance(value, np.ndarray) else value.numel()
    if count > MAX_METADATA_ELEMENTS:
        raise ValueError(f"metadata {key!r}: an array of {count} elements (at most {MAX_METADATA_ELEMENTS})")
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()  # a clone: a view would save its whole storage
    if value.dtype.kind in "mM":  # datetime64/timedelta64: tolist() gives integers for ns units
        value = value.astype(str)
    return plain_metadata(value.tolist(), key)  # object, datetime, longdouble arrays: element by element


def model_metadata(model: nn.Module) -> dict[str, Any]:
    """The metadata attached to ``model`` (units, training data, …), default units if none."""
    meta = dict(getattr(model, "metadata", None) or {})
    meta.setdefault("units", dict(DEFAULT_UNITS))
    return meta


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically (see ``visnet.files.atomic``)."""
    with atomic_open(path) as handle:
        torch.save(obj, handle)
    return Path(path)


def save_model(model: nn.Module, path: str | os.PathLike, **metadata: Any) -> Path:
    """Write ``model`` as a plain-dict file (atomically); whatever it writes ``load_model`` reads.

    Args:
        model: the ViSNet to save; a compiled one (``visnet.compile_model`` or ``torch.compile``)
            saves the eager model it wraps (the same file as saving that model).
        path: destination file (conventionally ``.pt``); not a folder or a name ending in a separator.
        **metadata: merged over ``model.metadata``; e.g. ``units={"energy": "kcal/mol",
            "length": "Å"}`` (a dict of unit names, or a list of (quantity, unit) pairs),
            ``training_data=...``. Cutoff, dtype and package version are added. Stored as plain
            values, at any depth (see ``plain_metadata``).

    Returns:
        The path written.

    Raises:
        ValueError: metadata that cannot be stored (naming its key), a model that is not a ViSNet
            (an exported ``.pt2`` package holds no weights), a model on the meta device, or a
            ``path`` naming a folder. Nothing is written then.
        OSError: the file cannot be written (a full disk says "no space left" and names it).
    """
    meta = model_metadata(model)  # before unwrapping: metadata set on a compiled wrapper counts
    model = _eager_model(model)
    _check_destination(path)
    meta.update(metadata)
    meta.update(cutoff=model.cutoff, dtype=str(model.dtype).removeprefix("torch."), visnet_version=package_version())
    meta = {k: plain_metadata(v, k) for k, v in meta.items()}
    meta["units"] = _plain_units(meta["units"])
    if model.device.type == "meta":
        raise ValueError("the model is on the meta device: it has no weights to save (build or load it on a device)")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "hyperparameters": plain_metadata(dict(model.hparams), "hyperparameters"),
        "state_dict": state,
        "metadata": meta,
    }
    return atomic_save(payload, path)


def _eager_model(model: nn.Module) -> ViSNet:
    """The ``ViSNet`` whose weights ``save_model`` writes: ``model`` itself or the eager model a
    compiled form holds; ValueError for anything else."""
    if isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile(model): an OptimizedModule
        model = model._orig_mod
    form = model_form(model)
    if form == "exported":
        raise ValueError(
            "save_model: an exported package (.pt2) holds compiled code, not weights; "
            "save the model it was exported from (visnet export reads model files, not packages)"
        )
    if form == "compiled":
        model = model.eager_model
    if isinstance(model, ViSNet):
        return model
    raise ValueError(f"save_model: expected a visnet.ViSNet, got a {type(model).__name__}")


def _check_destination(path: str | os.PathLike) -> None:
    """A model file name, not a folder (existing, or named with a trailing separator)."""
    name = os.fspath(path)
    if Path(name).is_dir() or name.endswith((os.sep, "/")) or (os.altsep and name.endswith(os.altsep)):
        raise ValueError(
            f"save_model: {name!r} is a folder; give a file name such as {os.path.join(name, 'model.pt')!r}"
        )


def _plain_units(units: Any) -> dict[str, str]:
    """``units`` (stored metadata) as a dict of quantity -> unit name; a list of pairs becomes one."""
    if isinstance(units, list) and all(isinstance(pair, list) and len(pair) == 2 for pair in units):
        units = dict(units)
    if not isinstance(units, dict):
        raise ValueError(f"metadata 'units': expected a dict like {DEFAULT_UNITS}, got {units!r}")
    for quantity, unit in units.items():
        if not isinstance(quantity, str) or not isinstance(unit, str):
            raise ValueError(f"metadata 'units.{quantity}': unit names are strings, got {unit!r} for {quantity!r}")
        near = difflib.get_close_matches(quantity, ["energy", "length"], n=1, cutoff=0.7)
        if near and quantity != near[0]:  # "lenght": nm would otherwise be dropped and Å assumed
            raise ValueError(
                f"metadata 'units.{quantity}': not a quantity the model files know; did you mean {near[0]!r}?"
            )
    try:  # the units every reader converts with: refuse at save what the calculator would refuse at load
        UnitConversion.from_metadata(units)
    except ValueError as err:
        raise ValueError(f"metadata 'units': {err}") from None
    return units


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
    _refuse_package(path)
    _check_file_size(path)
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


def _refuse_package(path: Path) -> None:
    """ValueError for an exported package (recognised by content): not a model file, and not corrupted."""
    if is_exported_file(path):
        raise ValueError(
            f"{path} is an exported package (visnet export), not a model file: load it with "
            f"visnet.load_exported({str(path)!r}) or pass it as model= / --model; export needs the model file (.pt)"
        )


def _check_file_size(path: Path) -> None:
    """Refuse a file whose (uncompressed) contents exceed ``MAX_FILE_BYTES``, before reading it."""
    size = path.stat().st_size
    if zipfile.is_zipfile(path):  # torch's format: sizes as declared by the archive, read without extracting
        try:
            with zipfile.ZipFile(path) as archive:
                size = sum(info.file_size for info in archive.infolist())
        except (zipfile.BadZipFile, OSError, ValueError) as err:
            raise ValueError(f"cannot read model file {path}: a corrupted archive ({err})") from None
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{path}: its contents take {size} bytes, more than a model file may ({MAX_FILE_BYTES})")


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
    large = [k for k, v in meta.items() if isinstance(v, torch.Tensor) and v.numel() > MAX_METADATA_ELEMENTS]
    if large:
        raise ValueError(f"{path}: metadata {large[0]!r} holds more than {MAX_METADATA_ELEMENTS} elements")
    return _float_dtype(meta.get("dtype", "float32"), f"{path}: metadata 'dtype'")


def _float_dtype(dtype: Any, what: str) -> torch.dtype:
    """torch.float32/float64 from a dtype or its name; ValueError for anything else."""
    resolved = getattr(torch, dtype.removeprefix("torch."), None) if isinstance(dtype, str) else dtype
    if resolved not in (torch.float32, torch.float64):
        raise ValueError(f"{what} must be float32 or float64, got {dtype!r}")
    return resolved


def _check_request(hparams: dict[str, Any], state: dict[str, Any], meta: dict[str, Any], path: Path) -> None:
    """Validate the stored hyperparameters on the meta device (nothing allocated): their types and
    ranges, agreement with the metadata's cutoff, and a parameter count within ``MAX_PARAMETERS``
    and the weights the file holds."""
    try:
        with torch.device("meta"):
            shape_only = ViSNet(**hparams)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: invalid stored hyperparameters: {str(err)[:300]}") from None
    cutoff = meta.get("cutoff", shape_only.cutoff)
    if not isinstance(cutoff, numbers.Real) or not math.isclose(float(cutoff), shape_only.cutoff):
        raise ValueError(
            f"{path}: the stored hyperparameters say cutoff {shape_only.cutoff} Å but the metadata says {cutoff!r}"
        )
    wanted = sum(t.numel() for t in shape_only.state_dict().values())
    held = sum(t.numel() for t in state.values())
    if wanted > MAX_PARAMETERS or wanted > held:
        raise ValueError(
            f"{path}: weights do not match the stored hyperparameters: they declare {wanted} weights, the file holds {held} "
            f"(at most {MAX_PARAMETERS} are loaded)"
        )


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
            another model, non-finite weights, a device this machine lacks
            (``visnet.devices.resolve_device``), or a ``dtype`` other than float32/float64;
            stored hyperparameters of the wrong type or range, contradicting the metadata's
            cutoff, or declaring more weights than the file holds or than ``MAX_PARAMETERS``
            (2**28); contents over ``MAX_FILE_BYTES`` (2 GiB uncompressed) or a metadata array
            over ``MAX_METADATA_ELEMENTS`` (10**6). These bounds are checked before allocating.

    Example:
        ```python
        from visnet import load_model

        model = load_model("default", dtype="float64")   # or a file: load_model("runs/x/model.pt")
        print(model.metadata["units"], model.cutoff)     # {"energy": "eV", "length": "Å"}, Å
        ```
    """
    path = _resolve(path)
    dtype = None if dtype is None else _float_dtype(dtype, "dtype")
    device = None if device is None else resolve_device(device)  # before reading: one line, not torch's assert
    payload = read_checkpoint(path)
    if "pytorch-lightning_version" in payload:
        hparams, state, meta = _from_lightning(payload, path)
    elif payload.get("format") == FORMAT:
        hparams, state, meta = payload.get("hyperparameters"), payload.get("state_dict"), payload.get("metadata") or {}
    else:
        raise ValueError(f"{path} is not a ViSNet model file (keys: {sorted(map(str, payload))[:8]})")
    saved_dtype = _check_parts(hparams, state, meta, path)
    hparams = with_legacy_defaults(hparams)  # files from before cutoff_type: cosine
    _check_request(hparams, state, meta, path)
    model = _build(hparams, state, saved_dtype, path)
    model.metadata = dict(meta)
    model = model.to(device=device or "cpu", dtype=dtype or saved_dtype)
    return model.eval()


def from_pyg(pyg_model: nn.Module) -> ViSNet:
    """Import the weights of a ``torch_geometric.nn.models.ViSNet``.

    The result reproduces PyG's energies and forces on the same inputs (``vector_cutoff`` and
    ``isolated_atom_reference`` are off and ``vector_norm_eps`` is 0, as in the reference; its
    ``derivative`` is kept; ``cutoff_type`` is the reference's "cosine"). Set ``model.hparams``-compatible smoothing by rebuilding with
    ``vector_norm_eps > 0`` if the imported model must be smooth at symmetric structures. Our
    neighbour list never truncates, so results match as long as no atom of the input has more
    than PyG's ``max_num_neighbors`` neighbours.

    Args:
        pyg_model: a ``torch_geometric.nn.models.ViSNet`` (its hyperparameters and weights are
            read; it is not modified).

    Returns:
        A ``visnet.ViSNet`` in the dtype of ``pyg_model``, in the same units as its training data.
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
        cutoff_type="cosine",
    )
    ref = next(pyg_model.parameters())
    model = model.to(dtype=ref.dtype, device=ref.device)
    model.load_state_dict(pyg_model.state_dict(), strict=True)
    model.metadata = {"units": dict(DEFAULT_UNITS), "source": "imported from torch_geometric ViSNet"}
    return model


def model_elements(model: AtomisticModel) -> frozenset[int]:
    """Atomic numbers ``model`` may be used for: ``model.elements`` (metadata "elements", numbers or
    symbols, else 1..max_z−1; ``visnet.model.interface.declared_elements``)."""
    return model.elements
