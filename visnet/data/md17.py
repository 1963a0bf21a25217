"""MD17-style npz files: the sGDML layout (``R``, ``z``, ``E``, ``F``) and the rMD17 layout
(``nuclear_charges``, ``coords``, ``energies``, ``forces``).

The full official MD17 / MD22 / rMD17 files load unchanged. Units: the sGDML ``e_unit`` /
``r_unit`` keys when present, else MD17's kcal/mol and Å (rMD17 uses the same units).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visnet.data.structures import AtomsData, fixed_composition
from visnet.units import canonical_unit

# Key names of the two layouts: role -> key.
SGDML_KEYS = {"z": "z", "pos": "R", "energy": "E", "forces": "F"}
RMD17_KEYS = {"z": "nuclear_charges", "pos": "coords", "energy": "energies", "forces": "forces"}
DEFAULT_UNITS = {"energy": "kcal/mol", "length": "Å"}


def detect_layout(keys: set[str]) -> dict[str, str] | None:
    """The key map of the npz layout with these keys, or None if it is neither MD17 layout."""
    for layout in (SGDML_KEYS, RMD17_KEYS):
        if layout["z"] in keys and layout["pos"] in keys:
            return layout
    return None


def read_md17_npz(path: str | Path, energy_unit: str | None = None, length_unit: str | None = None) -> AtomsData:
    """Read an MD17-style npz (either layout) into ``AtomsData`` in the file's units.

    Args:
        path: the npz file.
        energy_unit: energy unit of the file; default: its ``e_unit`` key, else kcal/mol.
        length_unit: length unit of the file; default: its ``r_unit`` key, else Å.

    Returns:
        ``AtomsData`` with target "energy" (frames,), forces (frames·atoms, 3) when present.

    Raises:
        ValueError: missing keys, mismatched shapes, units contradicting the file's own.
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as npz:
        keys = set(npz.files)
        layout = detect_layout(keys)
        if layout is None or layout["energy"] not in keys:
            raise ValueError(
                f"{path}: not an MD17-style npz: needs keys {sorted(SGDML_KEYS.values())} (sGDML) or "
                f"{sorted(RMD17_KEYS.values())} (rMD17); found {sorted(keys)}"
            )
        arrays = {role: npz[key] for role, key in layout.items() if key in keys}
        units = {
            "energy": _unit(npz, "e_unit", energy_unit, "energy", path),
            "length": _unit(npz, "r_unit", length_unit, "length", path),
        }
        info = {k: str(npz[k]) for k in ("name", "theory") if k in keys and npz[k].ndim == 0}
    pos, z, energy, forces = _check_shapes(arrays, layout, path)
    z_flat, ptr = fixed_composition(z, pos)
    data = AtomsData(
        z=z_flat,
        pos=pos.reshape(-1, 3).astype(np.float64),
        ptr=ptr,
        y=energy.astype(np.float64),
        forces=None if forces is None else forces.reshape(-1, 3).astype(np.float64),
        target="energy",
        units=units,
        source=str(path),
        info=info,
    )
    return data.validate()


def _unit(npz, key: str, given: str | None, kind: str, path: Path) -> str:
    declared = None
    if key in npz.files:
        raw = npz[key]
        declared = canonical_unit((raw.item().decode() if raw.dtype.kind == "S" else str(raw)), kind)
    if given is not None:
        given = canonical_unit(given, kind)
        if declared is not None and declared != given:
            raise ValueError(f"{path}: the file declares {key}={declared!r} but {kind}_unit={given!r} was given")
        return given
    return declared or DEFAULT_UNITS[kind]


def _atomic_numbers(z: np.ndarray, key: str, path: Path) -> np.ndarray:
    """(atoms,) int64 atomic numbers; ValueError for non-numeric or non-integer entries."""
    z = np.asarray(z)
    if z.dtype.kind not in "iuf" or (z.dtype.kind == "f" and not np.all(np.isfinite(z) & (z == np.round(z)))):
        first = z.ravel()[:5].tolist()
        raise ValueError(f"{path}: key {key!r} must hold integer atomic numbers, got {z.dtype} {first}")
    return z.astype(np.int64)


def _check_shapes(arrays: dict[str, np.ndarray], layout: dict[str, str], path: Path):
    pos, z = arrays["pos"], _atomic_numbers(arrays["z"], layout["z"], path)
    if pos.ndim != 3 or pos.shape[2] != 3:
        raise ValueError(f"{path}: key {layout['pos']!r} has shape {pos.shape}, expected (frames, atoms, 3)")
    frames, atoms = pos.shape[:2]
    if frames == 0:
        raise ValueError(f"{path}: key {layout['pos']!r} holds no frames (shape {pos.shape})")
    if z.shape != (atoms,):
        raise ValueError(
            f"{path}: key {layout['z']!r} has shape {z.shape}, expected ({atoms},) to match {layout['pos']!r} {pos.shape}"
        )
    energy = np.asarray(arrays["energy"])
    if energy.shape not in ((frames,), (frames, 1)):
        raise ValueError(
            f"{path}: key {layout['energy']!r} has shape {energy.shape}, expected ({frames},) or ({frames}, 1)"
        )
    forces = arrays.get("forces")
    if forces is not None and forces.shape != pos.shape:
        raise ValueError(
            f"{path}: key {layout['forces']!r} has shape {forces.shape}, expected {pos.shape} like {layout['pos']!r}"
        )
    return pos, z, energy.reshape(frames), forces
