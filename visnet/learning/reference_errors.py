"""Errors of a committee against reference frames (``--test``): force MAE (eV/Å, every
component) and energy MAE per atom (eV/atom) of the committee mean, frame by frame through the
ASE calculator (a test set of an active-learning run is small: tens to hundreds of frames)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from visnet.inference.calculator import ViSNetCalculator
from visnet.structures.read import read_atoms

__all__ = ["committee_errors", "read_reference"]


def read_reference(path: str | Path) -> list[Atoms]:
    """The frames of the reference file ``path``, each with an energy (eV) and forces (N, 3) eV/Å.

    Raises:
        ValueError: unreadable or empty file, or a frame without finite energy and forces (named).
    """
    frames = read_atoms(path)
    if not frames:
        raise ValueError(f"test file {path} holds no structure")
    for index, atoms in enumerate(frames):
        try:
            energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        except Exception:  # no calculator, or a single-point one without that property
            raise ValueError(
                f"test file {path}, frame {index}: no reference energy and forces (an extended XYZ with "
                "energy= and forces, e.g. written by visnet label)"
            ) from None
        if not (np.isfinite(energy) and np.isfinite(forces).all()):
            raise ValueError(f"test file {path}, frame {index}: the reference energy or forces are not finite")
    return frames


def committee_errors(members: Sequence[str | Path], frames: Sequence[Atoms]) -> dict[str, float]:
    """Force and energy errors of the committee mean of ``members`` on the reference ``frames``.

    Returns:
        ``{"force_mae": eV/Å, "energy_mae_per_atom": eV/atom, "frames": count}``.
    """
    calc = ViSNetCalculator(model=[str(m) for m in members], accel="eager")
    force_errors, energy_errors = [], []
    for reference in frames:
        atoms = Atoms(numbers=reference.numbers, positions=reference.positions, cell=reference.cell, pbc=reference.pbc)
        atoms.calc = calc
        force_errors.append(np.abs(atoms.get_forces() - reference.get_forces()).ravel())
        energy = atoms.get_potential_energy() - reference.get_potential_energy()
        energy_errors.append(abs(energy) / len(atoms))
    return {
        "force_mae": float(np.concatenate(force_errors).mean()),
        "energy_mae_per_atom": float(np.mean(energy_errors)),
        "frames": float(len(frames)),
    }
