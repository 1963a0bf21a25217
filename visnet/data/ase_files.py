"""Any ASE-readable file with energies (and forces): extended XYZ, ASE db, ...

ASE's convention is eV and Å; other units must be given explicitly (``energy_unit``,
``length_unit``). Energies and forces are taken from ``atoms.info`` / ``atoms.arrays`` under the
given keys (e.g. ``REF_energy``), else from the attached (single-point) calculator. The level of
theory each frame records in ``atoms.info["level_of_theory"]`` (what ``visnet label`` writes) goes
into ``AtomsData.info``: ``"theory"`` when the frames agree, ``"levels_of_theory"`` (JSON list) when
they do not (``visnet.data.loading`` then refuses the file unless mixed levels are allowed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from visnet.data.structures import AtomsData
from visnet.structures.read import read_atoms
from visnet.units import canonical_unit

LEVEL_OF_THEORY_KEY = "level_of_theory"  # atoms.info key of a frame's level of theory
UNRECORDED = "unrecorded"  # the level of frames without that key, among frames that have it


def read_ase_file(
    path: str | Path,
    index: str = ":",
    energy_key: str = "energy",
    forces_key: str = "forces",
    energy_unit: str | None = None,
    length_unit: str | None = None,
) -> AtomsData:
    """Read structures with energies (and forces, if every frame has them) with ``ase.io.read``.

    Args:
        path: any file ``ase.io.read`` understands.
        index: ASE index string of the frames to read (default all).
        energy_key: ``atoms.info`` key of the energy (falls back to the calculator's energy).
        forces_key: ``atoms.arrays`` key of the forces (falls back to the calculator's forces).
        energy_unit: unit of the energies in the file (default eV).
        length_unit: unit of positions and cell (default Å).

    Returns:
        ``AtomsData`` in the file's units; forces are None when no frame has them.

    Raises:
        ValueError: unreadable file, a frame without energy, forces on some frames only.
    """
    path = Path(path)
    frames = read_atoms(path, index=index)
    if not frames:
        raise ValueError(f"{path}: no structures (index {index!r})")
    energies = np.array([_energy(atoms, energy_key, path, i) for i, atoms in enumerate(frames)], dtype=np.float64)
    forces = _forces(frames, forces_key, path)
    periodic = any(atoms.pbc.any() for atoms in frames)
    data = AtomsData(
        z=np.concatenate([atoms.numbers for atoms in frames]).astype(np.int64),
        pos=np.concatenate([atoms.positions for atoms in frames]).astype(np.float64),
        ptr=np.concatenate([[0], np.cumsum([len(atoms) for atoms in frames])]).astype(np.int64),
        y=energies,
        forces=forces,
        cell=np.stack([atoms.cell.array for atoms in frames]) if periodic else None,
        pbc=np.stack([atoms.pbc for atoms in frames]) if periodic else None,
        target="energy",
        units={
            "energy": canonical_unit(energy_unit or "eV", "energy"),
            "length": canonical_unit(length_unit or "Å", "length"),
        },
        source=str(path),
        info=theory_info(frames),
    )
    return data.validate()


def theory_info(frames: list) -> dict[str, str]:
    """``{"theory": level}`` when every frame records the same ``info["level_of_theory"]``,
    ``{"levels_of_theory": JSON list}`` when they differ (frames without it count as
    ``"unrecorded"``), ``{}`` when none records one."""
    levels = [atoms.info.get(LEVEL_OF_THEORY_KEY) for atoms in frames]
    distinct = sorted({str(level) for level in levels if level is not None})
    if not distinct:
        return {}
    if any(level is None for level in levels):
        distinct.append(UNRECORDED)
    if len(distinct) == 1:
        return {"theory": distinct[0]}
    return {"levels_of_theory": json.dumps(distinct)}


def _energy(atoms, key: str, path: Path, frame: int) -> float:
    if key in atoms.info:
        return _scalar_energy(atoms.info[key], key, path, frame)
    results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
    if key == "energy" and "energy" in results:
        return _scalar_energy(results["energy"], key, path, frame)
    raise ValueError(f"{path}: frame {frame} has no energy (looked for info key {key!r} and a calculator energy)")


def _scalar_energy(value: object, key: str, path: Path, frame: int) -> float:
    """A real number from ``atoms.info[key]``; ValueError for booleans (extended XYZ reads
    ``energy=T`` as True), strings, arrays and other non-scalars."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(
            f"{path}: frame {frame} has a non-numeric energy {key}={value!r} ({type(value).__name__}); "
            "expected one real number"
        )
    return float(value)


def _frame_forces(atoms, key: str) -> np.ndarray | None:
    if key in atoms.arrays:
        return np.asarray(atoms.arrays[key], dtype=np.float64)
    results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
    return np.asarray(results["forces"], dtype=np.float64) if key == "forces" and "forces" in results else None


def _forces(frames: list, key: str, path: Path) -> np.ndarray | None:
    per_frame = [_frame_forces(atoms, key) for atoms in frames]
    missing = [i for i, f in enumerate(per_frame) if f is None]
    if len(missing) == len(frames):
        return None
    if missing:
        raise ValueError(f"{path}: frames {missing[:10]} have no forces (key {key!r}) while others do")
    for i, (atoms, f) in enumerate(zip(frames, per_frame)):
        if f.shape != (len(atoms), 3):
            raise ValueError(f"{path}: frame {i} forces have shape {f.shape}, expected ({len(atoms)}, 3)")
    return np.concatenate(per_frame)
