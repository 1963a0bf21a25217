"""Model bundles: a JSON manifest naming several property models used together.

``visnet/pretrained/qm9.json`` lists one model file per QM9 property with its unit and held-out
test MAE, so ``visnet.predict("CCO", model="qm9")`` runs all of them. Layout::

    {"format": "visnet-bundle", "format_version": 1, "name": "qm9", "description": "...",
     "models": [{"property": "U0", "file": "qm9_U0.pt", "unit": "eV",
                 "test_mae": 0.012, "test_mae_unit": "eV", "num_test": 2000, ...}, ...]}

``file`` is relative to the manifest's folder. Extra keys (config, data, paper MAE) are kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from visnet.files.atomic import atomic_write_text
from visnet.io.model_files import PRETRAINED_DIR

__all__ = [
    "BUNDLE_FORMAT",
    "bundle_members",
    "bundle_path",
    "list_bundles",
    "read_bundle",
    "write_bundle",
]

BUNDLE_FORMAT = "visnet-bundle"
BUNDLE_VERSION = 1


def _is_bundle(path: Path) -> bool:
    """Whether ``path`` is a bundle manifest (model cards like ``default.json`` are not)."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == BUNDLE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def list_bundles(directory: str | os.PathLike = PRETRAINED_DIR) -> list[str]:
    """Names of the bundle manifests in ``directory`` (default: the bundled ones)."""
    return sorted(p.stem for p in Path(directory).glob("*.json") if _is_bundle(p))


def bundle_path(spec: str | os.PathLike) -> Path | None:
    """The manifest ``spec`` names (a bundled name like "qm9" or a ``.json`` path), else None.

    A bundled single model (``<name>.pt``, whose ``<name>.json`` is its model card) is not a bundle.
    """
    name = str(spec)
    if name.endswith(".json"):
        return Path(name)
    if os.sep not in name and not name.endswith((".pt", ".ckpt")) and not (PRETRAINED_DIR / f"{name}.pt").is_file():
        candidate = PRETRAINED_DIR / f"{name}.json"
        if candidate.is_file() and _is_bundle(candidate):
            return candidate
    return None


def read_bundle(path: str | os.PathLike) -> dict[str, Any]:
    """The validated manifest at ``path``.

    Raises:
        FileNotFoundError: no such manifest.
        ValueError: not JSON, not a bundle manifest, or an entry without property/file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"bundle manifest not found: {path}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"bundle manifest {path} is not valid JSON: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise ValueError(f'{path} is not a model bundle manifest (expected "format": "{BUNDLE_FORMAT}")')
    models = manifest.get("models")
    if not isinstance(models, list) or not models:
        raise ValueError(f"bundle manifest {path} lists no models")
    for k, entry in enumerate(models):
        if not isinstance(entry, dict) or not entry.get("property") or not entry.get("file"):
            raise ValueError(f'bundle manifest {path}: model entry {k} needs "property" and "file", got {entry!r}')
    return manifest


def bundle_members(path: str | os.PathLike) -> list[tuple[str, Path, dict[str, Any]]]:
    """(property, model file, manifest entry) of every model of the bundle at ``path``.

    Raises:
        FileNotFoundError: model files of the manifest are missing (all of them are named, with
            the manifest's training script when it records one).
    """
    path = Path(path)
    manifest = read_bundle(path)
    members = [(str(e["property"]), path.parent / str(e["file"]), e) for e in manifest["models"]]
    missing = [str(file) for _, file, _ in members if not file.is_file()]
    if missing:
        hint = manifest.get("training_script")
        how = f"; train them with {hint}" if hint else ""
        name = manifest.get("name", path.stem)
        raise FileNotFoundError(f"bundle {name!r} ({path}): model files missing: {missing}{how}")
    return members


def write_bundle(path: str | os.PathLike, name: str, models: list[dict[str, Any]], **extra: Any) -> Path:
    """Write a bundle manifest atomically.

    Args:
        path: the ``.json`` file to write.
        name: bundle name (e.g. "qm9").
        models: entries with at least "property" and "file" (relative to the manifest's folder);
            conventionally also "unit", "test_mae", "test_mae_unit", "num_test".
        **extra: top-level keys (description, training_script, level_of_theory, ...).

    Returns:
        The path written.
    """
    manifest = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION, "name": name, **extra, "models": models}
    for k, entry in enumerate(models):
        if not entry.get("property") or not entry.get("file"):
            raise ValueError(f'bundle {name!r}: model entry {k} needs "property" and "file", got {entry!r}')
    return atomic_write_text(path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
