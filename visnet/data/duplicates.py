"""Structures that occur in more than one split (the same frame repeated in a data file): the
validation error then measures memorisation. ``visnet fit`` warns about them."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np

from visnet.data.structures import AtomsData

__all__ = ["DUPLICATE_DECIMALS", "shared_structures", "warn_split_overlap"]

DUPLICATE_DECIMALS = 6  # positions equal to 1e-6 Å count as the same structure


def _fingerprints(data: AtomsData, indices: np.ndarray) -> dict[bytes, int]:
    """Hash of (atomic numbers, rounded positions, cell) -> structure index, for ``indices``."""
    out: dict[bytes, int] = {}
    for i in np.asarray(indices, dtype=np.int64):
        start, stop = int(data.ptr[i]), int(data.ptr[i + 1])
        digest = hashlib.sha256(data.z[start:stop].astype(np.int64).tobytes())
        digest.update(np.round(data.pos[start:stop], DUPLICATE_DECIMALS).astype(np.float64).tobytes())
        if data.cell is not None:
            digest.update(np.round(data.cell[i], DUPLICATE_DECIMALS).astype(np.float64).tobytes())
        out.setdefault(digest.digest(), int(i))
    return out


def shared_structures(data: AtomsData, first: np.ndarray, second: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (i in ``first``, j in ``second``) of identical structures (same atoms, positions to
    ``DUPLICATE_DECIMALS`` decimals in Å, same cell)."""
    seen = _fingerprints(data, first)
    pairs = []
    for key, j in _fingerprints(data, second).items():
        if key in seen:
            pairs.append((seen[key], j))
    return sorted(pairs)


def warn_split_overlap(
    data: AtomsData, splits: dict[str, np.ndarray], names: tuple[str, str] = ("train", "val")
) -> int:
    """Warn (naming a few structure indices) when splits ``names`` share structures; returns the count."""
    first, second = names
    if first not in splits or second not in splits:
        return 0
    pairs = shared_structures(data, splits[first], splits[second])
    if pairs:
        shown = ", ".join(f"{i} = {j}" for i, j in pairs[:5])
        warnings.warn(
            f"{data.source}: {len(pairs)} structure(s) of the {second} split also occur in the {first} split "
            f"(identical frames, e.g. structures {shown}); the {second} error will look better than it is",
            stacklevel=2,
        )
    return len(pairs)
