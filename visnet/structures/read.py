"""The package's one wrapper around ``ase.io.read``: a clear error naming the file, never ASE's traceback."""

from __future__ import annotations

import os
from pathlib import Path

from ase import Atoms

__all__ = ["read_atoms"]

# Characters of ASE's own message kept in ours (some readers quote whole lines of the file).
MESSAGE_CHARS = 200


def read_atoms(path: str | os.PathLike, index: str | int | slice = ":") -> list[Atoms]:
    """The frames of an ASE-readable file selected by ``index`` (an int gives one frame).

    Args:
        path: any file ``ase.io.read`` understands (extxyz, xyz, cif, POSCAR, ASE db, ...).
        index: ASE index of the frames (":" all, -1 the last, "0:10", ...).

    Returns:
        The frames as ASE returns them (positions in Å, ``info``, ``arrays`` and single-point
        calculators kept), always as a list (possibly empty).

    Raises:
        ValueError: "cannot read structure file <path>: <ASE's error type>: <message>"; the
            message says "cannot read this file" too, whatever ASE raised.
    """
    import ase.io

    try:
        frames = ase.io.read(Path(path), index=index)
    except Exception as err:  # ASE raises many kinds for unreadable input
        raise ValueError(
            f"cannot read structure file {path} (ASE cannot read this file: "
            f"{type(err).__name__}: {str(err)[:MESSAGE_CHARS]})"
        ) from None
    return frames if isinstance(frames, list) else [frames]
