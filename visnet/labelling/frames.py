"""The structures to label: read from a file or taken from a list, checked before any calculation
(geometry, total charge and spin against the electron count), and fingerprinted so that a resumed
run can tell whether its journal was made from the same input."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from visnet.files.paths import refuse_folder
from visnet.structures.checks import check_geometry
from visnet.structures.read import read_atoms

__all__ = ["Spin", "fingerprint", "load_frames", "resolve_spins"]


@dataclass(frozen=True)
class Spin:
    """Total charge (e) and spin multiplicity (2S+1) of one frame."""

    charge: int
    multiplicity: int


def load_frames(inputs: str | os.PathLike | Sequence[Atoms]) -> list[Atoms]:
    """Copies of the structures to label: every frame of an ASE-readable file, or a list of Atoms.

    Raises:
        ValueError: unreadable or empty file, an empty list, an item that is not Atoms, a frame
            without atoms or with non-finite positions (the message names the frame).
        FileNotFoundError: the file does not exist.
    """
    if isinstance(inputs, (str, os.PathLike)):
        path = Path(inputs)
        if not path.exists():
            raise FileNotFoundError(f"structure file {path} does not exist")
        refuse_folder(path, "structure file")
        if path.stat().st_size == 0:
            raise ValueError(f"structure file {path} is empty")
        frames = read_atoms(path)
        where = f"structure file {path}"
    elif isinstance(inputs, Atoms):
        frames, where = [inputs], "the Atoms given"
    else:
        frames, where = list(inputs), "the list of structures given"
    if not frames:
        raise ValueError(f"{where} holds no structures")
    for index, atoms in enumerate(frames):
        if not isinstance(atoms, Atoms):
            raise ValueError(f"{where}: item {index} is a {type(atoms).__name__}, not ase.Atoms")
        try:
            check_geometry(atoms)
        except ValueError as err:
            raise ValueError(f"{where}: frame {index}: {err}") from None
    return [atoms.copy() for atoms in frames]


def _integer(value: object, what: str, frame: int) -> int:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"frame {frame}: {what} {value!r} is not a number") from None
    if not np.isfinite(number) or number != round(number):
        raise ValueError(f"frame {frame}: {what} {value!r} is not an integer")
    return int(round(number))


def resolve_spins(frames: Sequence[Atoms], charge: int | None) -> list[Spin]:
    """Charge and multiplicity of each frame: ``atoms.info["charge"]`` / ``["multiplicity"]`` where
    present, else ``charge`` (default 0) and the lowest multiplicity the electron count allows (1 or 2).

    Raises:
        ValueError: a non-integer charge or multiplicity, ``charge`` contradicting a frame's own,
            more charge than electrons, or a multiplicity the electron count cannot have.
    """
    if charge is not None:
        charge = _integer(charge, "charge", 0)
    return [_spin(atoms, charge, index) for index, atoms in enumerate(frames)]


def _spin(atoms: Atoms, charge: int | None, index: int) -> Spin:
    own = atoms.info.get("charge")
    q = _integer(own, "info['charge']", index) if own is not None else charge
    if charge is not None and q != charge:
        raise ValueError(f"frame {index} has info['charge'] = {own} but charge {charge} was given for every frame")
    q = 0 if q is None else q
    electrons = int(atoms.numbers.sum()) - q
    if electrons < 0:
        raise ValueError(f"frame {index}: charge {q} removes more electrons than the frame has ({electrons + q})")
    mult = atoms.info.get("multiplicity")
    m = _integer(mult, "info['multiplicity']", index) if mult is not None else 1 + electrons % 2
    if m < 1 or (electrons + m - 1) % 2 or m - 1 > electrons:
        raise ValueError(
            f"frame {index}: multiplicity {m} is impossible with {electrons} electrons (charge {q}); "
            f"{'odd' if electrons % 2 else 'even'} counts need {'even' if electrons % 2 else 'odd'} multiplicities"
        )
    return Spin(q, m)


def fingerprint(frames: Sequence[Atoms], spins: Sequence[Spin]) -> str:
    """SHA-256 (hex, 16 characters) of the frames' atomic numbers, positions, cells, periodicity,
    charges and multiplicities, in order: equal for the same input, different after any change."""
    digest = hashlib.sha256(str(len(frames)).encode())
    for atoms, spin in zip(frames, spins):
        digest.update(np.ascontiguousarray(atoms.numbers, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(atoms.positions, dtype=np.float64).tobytes())
        digest.update(np.ascontiguousarray(atoms.cell.array, dtype=np.float64).tobytes())
        digest.update(np.asarray(atoms.pbc, dtype=bool).tobytes())
        digest.update(f"{spin.charge},{spin.multiplicity};".encode())
    return digest.hexdigest()[:16]
