"""Checks of output paths made before any work: a folder that is a file, a file in the way of a
folder to create, no write permission. Each raises ``ValueError`` naming the option and path."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["check_output_file", "check_output_folder", "refuse_folder"]


def refuse_folder(path: str | os.PathLike, what: str) -> None:
    """ValueError when the input file ``path`` is a folder (``what``: e.g. "structure file")."""
    try:
        is_dir = Path(path).is_dir()
    except OSError:  # e.g. a name longer than the file system allows (a long SMILES): not a folder
        return
    if is_dir:
        raise ValueError(f"{what} {path} is a folder, expected a file")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_folder(path: str | os.PathLike, what: str) -> Path:
    """``path`` is a writable folder or can be created as one; returns it.

    Args:
        path: the output folder.
        what: how to name it in the message, e.g. "output folder (--output-dir)".
    """
    path = Path(path)
    existing = _nearest_existing(path.absolute())
    if not existing.is_dir():
        blocked = "is a file" if existing == path.absolute() else f"cannot be created: {existing} is a file"
        raise ValueError(f"{what} {path} {blocked}, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path} is not writable (no write permission on {existing})")
    return path


def check_output_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` can be written as a file: not a folder, and its folder is writable; returns it."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder, not a file")
    check_output_folder(path.parent, f"folder of {what}")
    return path
