"""On-disk cache of processed data, keyed by a hash of the source file's content and the loading settings.

Writes are atomic (temporary file in the same folder, then ``os.replace``), so concurrent
processes (DDP ranks) and crashes never leave a half-written cache entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from visnet.data.structures import AtomsData
from visnet.files.atomic import atomic_open

# Bump when the processed layout or the readers change meaning: old cache entries are then ignored.
CACHE_VERSION = 3  # 3: ASE files record their level(s) of theory


def default_cache_dir() -> Path:
    """``$VISNET_CACHE_DIR``, else ``~/.cache/visnet/data``."""
    return Path(os.environ.get("VISNET_CACHE_DIR", Path.home() / ".cache" / "visnet" / "data"))


def cache_key(path: str | Path, settings: dict[str, Any]) -> str:
    """Hex digest of the source file's content (and absolute path) and ``settings``.

    Keyed on content, not size and mtime: an edit that keeps both (or restores an old mtime)
    still gives a fresh entry. Hashing reads the file once (BLAKE2b, ~1 GB/s).
    """
    path = Path(path).resolve()
    with open(path, "rb") as handle:
        content = hashlib.file_digest(handle, "blake2b").hexdigest()
    blob = json.dumps(
        {"path": str(path), "content": content, "settings": settings, "version": CACHE_VERSION},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def atomic_savez(path: str | Path, **arrays: np.ndarray) -> Path:
    """``np.savez`` to ``path`` atomically (see ``visnet.files.atomic``)."""
    with atomic_open(path, suffix=".tmp.npz") as handle:
        np.savez(handle, **arrays)
    return Path(path)


def cached(path: str | Path, settings: dict[str, Any], cache_dir: str | Path | None, build) -> AtomsData:
    """``build()`` once per (file, settings); later calls read the processed arrays from the cache.
    A cache entry that cannot be written (e.g. a full disk) only costs a warning.

    Args:
        path: the source file (its content is part of the key).
        settings: everything else that changes the result (format, units, target, keys ...).
        cache_dir: cache folder (None: ``default_cache_dir()``).
        build: zero-argument function returning the processed ``AtomsData``.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry = folder / f"{Path(path).stem}-{cache_key(path, settings)}.npz"
    if entry.is_file():
        try:
            with np.load(entry, allow_pickle=False) as npz:
                return AtomsData.from_arrays(npz)
        except Exception:  # unreadable entry (e.g. disk full earlier): rebuild it
            pass
    data = build()
    try:
        atomic_savez(entry, **data.to_arrays())
    except OSError as err:  # full disk, read-only cache folder: the data itself is fine
        warnings.warn(f"could not write the data cache entry {entry} ({err}); continuing without it", stacklevel=2)
    return data
