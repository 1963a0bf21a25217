"""``AtomsData``: a set of structures as ragged arrays (structure ``i`` is atoms ``ptr[i]:ptr[i+1]``).

One container for every source format (MD17/rMD17 npz, ASE files, QM9), already in the training
units, with the checks that make bad input fail before training starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass
class AtomsData:
    """Structures with one target per structure and optional per-atom forces.

    Attributes:
        z: (num_atoms,) int64 | atomic numbers.
        pos: (num_atoms, 3) float64 | positions, Å.
        ptr: (num_structures + 1,) int64 | structure ``i`` is atoms ``ptr[i]:ptr[i+1]``.
        y: (num_structures,) float64 | target (energy or property), in ``units[target]``.
        forces: (num_atoms, 3) float64 or None | forces −dE/dR in ``units["energy"]``/Å.
        cell: (num_structures, 3, 3) float64 or None | lattice vectors as rows, Å.
        pbc: (num_structures, 3) bool or None | periodic directions.
        target: name of ``y`` ("energy" for potential-energy data, a QM9 column name otherwise).
        units: units of the data, e.g. {"energy": "kcal/mol", "length": "Å"} or {"U0": "eV", ...}.
        source: the file the data came from (for error messages and metadata).
        info: extra metadata from the file (level of theory, molecule name, ...).
    """

    z: np.ndarray
    pos: np.ndarray
    ptr: np.ndarray
    y: np.ndarray
    forces: np.ndarray | None = None
    cell: np.ndarray | None = None
    pbc: np.ndarray | None = None
    target: str = "energy"
    units: dict[str, str] = field(default_factory=lambda: {"energy": "eV", "length": "Å"})
    source: str = "<memory>"
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ptr) - 1

    @property
    def natoms(self) -> np.ndarray:
        """(num_structures,) int64 atoms per structure."""
        return np.diff(self.ptr)

    @property
    def target_unit(self) -> str:
        return self.units.get(self.target, self.units.get("energy", ""))

    def subset(self, indices: np.ndarray) -> AtomsData:
        """The structures ``indices`` (in that order) as a new ``AtomsData``."""
        indices = np.asarray(indices, dtype=np.int64)
        starts, counts = self.ptr[indices], self.natoms[indices]
        atom_index = _ranges(starts, counts)
        ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        pick = lambda a: None if a is None else a[indices]  # noqa: E731
        return replace(
            self,
            z=self.z[atom_index],
            pos=self.pos[atom_index],
            ptr=ptr,
            y=self.y[indices],
            forces=None if self.forces is None else self.forces[atom_index],
            cell=pick(self.cell),
            pbc=pick(self.pbc),
        )

    def validate(self) -> AtomsData:
        """Check shapes and values; raise ``ValueError`` naming the file and the first bad frame."""
        n, m = len(self.z), len(self)
        _expect(
            self.ptr[0] == 0 and self.ptr[-1] == n and np.all(np.diff(self.ptr) > 0),
            self.source,
            f"ptr must rise from 0 to the number of atoms ({n}) with no empty structure",
        )
        _expect(self.pos.shape == (n, 3), self.source, f"positions have shape {self.pos.shape}, expected ({n}, 3)")
        _expect(self.y.shape == (m,), self.source, f"{self.target} has shape {self.y.shape}, expected ({m},)")
        if self.forces is not None:
            _expect(
                self.forces.shape == (n, 3), self.source, f"forces have shape {self.forces.shape}, expected ({n}, 3)"
            )
        bad_z = sorted(set(self.z[self.z <= 0].tolist()))
        _expect(not bad_z, self.source, f"atomic numbers must be positive; found {bad_z}")
        self._check_finite("positions", self.pos, per_atom=True)
        self._check_finite(self.target, self.y, per_atom=False)
        if self.forces is not None:
            self._check_finite("forces", self.forces, per_atom=True)
        if self.pbc is not None:
            self._check_cells()
        return self

    def _check_cells(self) -> None:
        """Periodic frames need finite cell vectors spanning their periodic directions."""
        m = len(self)
        _expect(
            self.cell is not None and self.cell.shape == (m, 3, 3) and self.pbc.shape == (m, 3),
            self.source,
            f"periodic data needs cell (frames, 3, 3) and pbc (frames, 3), got {getattr(self.cell, 'shape', None)} "
            f"and {self.pbc.shape}",
        )
        self._check_finite("cell", self.cell, per_atom=False)
        pbc = self.pbc.astype(bool)
        rows = self.cell * pbc[:, :, None]
        gram = rows @ rows.transpose(0, 2, 1) + np.eye(3) * (~pbc)[:, None, :]
        scale = np.prod(np.where(pbc, (rows**2).sum(axis=2), 1.0), axis=1)
        bad = np.flatnonzero(pbc.any(axis=1) & (np.linalg.det(gram) <= 1e-12 * scale))
        if bad.size:
            first = int(bad[0])
            raise ValueError(
                f"{self.source}: frame {first} is periodic (pbc={pbc[first].tolist()}) but its cell vectors along the "
                f"periodic directions are zero or degenerate ({bad.size} such frame(s): {bad[:10].tolist()})"
            )

    def _check_finite(self, name: str, values: np.ndarray, per_atom: bool) -> None:
        bad = ~np.isfinite(values)
        if bad.ndim > 1:
            bad = bad.reshape(len(bad), -1).any(axis=1)
        if not bad.any():
            return
        first = int(np.argmax(bad))
        frame = int(np.searchsorted(self.ptr, first, side="right") - 1) if per_atom else first
        frames = (
            np.unique(np.searchsorted(self.ptr, np.flatnonzero(bad), side="right") - 1)
            if per_atom
            else np.flatnonzero(bad)
        )
        raise ValueError(
            f"{self.source}: frame {frame} has non-finite (NaN/inf) {name} "
            f"({len(frames)} bad frame(s) in all: {frames[:10].tolist()}{' ...' if len(frames) > 10 else ''})"
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for ``np.savez`` (the inverse of ``from_arrays``)."""
        out = {
            "z": self.z,
            "pos": self.pos,
            "ptr": self.ptr,
            "y": self.y,
            "target": np.array(self.target),
            "unit_keys": np.array(list(self.units)),
            "unit_values": np.array(list(self.units.values())),
            "source": np.array(self.source),
            "info_keys": np.array(list(self.info), dtype=str),
            "info_values": np.array([str(v) for v in self.info.values()], dtype=str),
        }
        for key in ("forces", "cell", "pbc"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_arrays(cls, arrays: Any) -> AtomsData:
        """Rebuild from ``to_arrays`` output (or an open npz of it)."""
        get = lambda k: arrays[k] if k in arrays else None  # noqa: E731
        return cls(
            z=arrays["z"],
            pos=arrays["pos"],
            ptr=arrays["ptr"],
            y=arrays["y"],
            forces=get("forces"),
            cell=get("cell"),
            pbc=get("pbc"),
            target=str(arrays["target"]),
            units=dict(zip(arrays["unit_keys"].tolist(), arrays["unit_values"].tolist())),
            source=str(arrays["source"]),
            info=dict(zip(arrays["info_keys"].tolist(), arrays["info_values"].tolist())),
        )


def _expect(condition: bool, source: str, message: str) -> None:
    if not condition:
        raise ValueError(f"{source}: {message}")


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each pair (vectorised)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return np.arange(total, dtype=np.int64) + offsets


def fixed_composition(z: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z repeated per frame (frames·atoms,), ptr (frames + 1,)) for MD-style arrays of one molecule.

    Args:
        z: (atoms,) atomic numbers.
        positions: (frames, atoms, 3).
    """
    frames, atoms = positions.shape[:2]
    return np.tile(z.astype(np.int64), frames), np.arange(frames + 1, dtype=np.int64) * atoms
