"""Recognising an exported package (``visnet export``, a ``.pt2`` AOTInductor archive) by its name
or contents, without loading it: model files and packages are told apart here, below the code
that writes (``visnet.accel.export``) and loads (``visnet.accel.exported``) packages."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

__all__ = ["METADATA_NAME", "SUFFIX", "has_package_suffix", "is_exported_file"]

METADATA_NAME = "visnet_metadata.json"  # stored under the archive's extra/ folder
SUFFIX = ".pt2"


def has_package_suffix(path: str | os.PathLike) -> bool:
    """Whether ``path`` ends in ``.pt2`` (any case)."""
    return str(path).lower().endswith(SUFFIX)


def is_exported_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an exported (PT2) package: recognised by its contents when it is a file
    (a zip with a compiled library or PT2 markers, not a ``torch.save`` file, whatever its name),
    else by its ``.pt2`` suffix (any case)."""
    path = Path(path)
    if not path.is_file():
        return has_package_suffix(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    if any(name.endswith("/data.pkl") for name in names):  # torch.save's archive: a model file
        return False
    markers = (f"/extra/{METADATA_NAME}", "/archive_format", ".so")
    return any(name.endswith(markers) for name in names)
