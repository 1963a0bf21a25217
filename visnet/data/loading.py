"""``load_atoms_data``: any supported file -> ``AtomsData`` in the training units.

Formats: "md17" (sGDML or rMD17 npz), "qm9" (the shared ragged QM9 npz), "ase" (anything
``ase.io.read`` reads: extxyz, ASE db, ...); "auto" looks at the suffix and the npz keys.
Positions always end in Å; energies and forces in ``output_energy_unit`` (default: the file's unit;
QM9 energies are always eV). A file whose frames record different levels of theory is refused
unless ``allow_mixed_theory`` (energies of two methods differ by eV per atom: one fit cannot serve both).
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from visnet.data.ase_files import read_ase_file
from visnet.data.cache import cached
from visnet.data.md17 import detect_layout, read_md17_npz
from visnet.data.qm9 import check_qm9_target, is_qm9_npz, read_qm9_npz
from visnet.data.structures import AtomsData
from visnet.files.paths import refuse_folder
from visnet.units import canonical_unit, energy_factor, length_factor

FORMATS = ("auto", "md17", "qm9", "ase")


def detect_format(path: str | Path) -> str:
    """ "md17", "qm9" or "ase" for a data file."""
    path = Path(path)
    if path.suffix != ".npz":
        return "ase"
    with np.load(path, allow_pickle=False) as npz:
        keys = set(npz.files)
    if is_qm9_npz(keys):
        return "qm9"
    if detect_layout(keys) is not None:
        return "md17"
    raise ValueError(
        f"{path}: unknown npz layout (keys {sorted(keys)}); expected MD17 (R, z, E, F), rMD17 "
        "(nuclear_charges, coords, energies, forces) or QM9 (z, pos, ptr, targets, target_names)"
    )


def load_atoms_data(
    path: str | Path,
    format: str = "auto",
    target: str = "energy",
    energy_unit: str | None = None,
    length_unit: str | None = None,
    output_energy_unit: str | None = None,
    index: str = ":",
    energy_key: str = "energy",
    forces_key: str = "forces",
    cache_dir: str | Path | None = None,
    allow_mixed_theory: bool = False,
) -> AtomsData:
    """Read and check a data file; ASE formats are cached on disk (npz files are read directly).

    Args:
        path: data file.
        format: "auto", "md17", "qm9" or "ase".
        target: "energy" for energy(+force) data; a QM9 column ("U0", "mu", ...) for QM9.
        energy_unit / length_unit: units of the file when it does not say (MD17 npz default
            kcal/mol & Å, ASE files eV & Å); must agree with the file's own ``e_unit``/``r_unit``.
        output_energy_unit: convert energies and forces to this unit (default: the file's).
        index, energy_key, forces_key: ASE-file options (frames to read, info/arrays keys).
        cache_dir: cache folder for processed ASE files (default ``~/.cache/visnet/data``).
        allow_mixed_theory: accept frames recording different levels of theory
            (``atoms.info["level_of_theory"]``); refused by default.

    Returns:
        ``AtomsData`` with positions in Å and energies/forces in the output unit.

    Raises:
        FileNotFoundError: no such file. ValueError: any problem with its content or the options.
    """
    path = Path(path)
    refuse_folder(path, "data file")
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    with _errors_name_the_file(path):
        data = _load(
            path, format, target, energy_unit, length_unit, output_energy_unit, index, energy_key, forces_key, cache_dir
        )
    if not allow_mixed_theory:
        check_one_level_of_theory(data)
    return data


def check_one_level_of_theory(data: AtomsData) -> None:
    """Refuse data whose frames record different levels of theory (``info["levels_of_theory"]``).

    Raises:
        ValueError: naming the file and the levels, and how to force it.
    """
    mixed = data.info.get("levels_of_theory")
    if not mixed:
        return
    levels = " and ".join(repr(level) for level in json.loads(mixed))
    raise ValueError(
        f"{data.source} mixes levels of theory {levels} (info['level_of_theory'] of its frames): their energies "
        "have different references; split the file, or set data.allow_mixed_theory true to train on both"
    )


@contextmanager
def _errors_name_the_file(path: Path) -> Iterator[None]:
    """Re-raise any read error as a ValueError naming ``path``: truncated or non-zip npz files
    (``BadZipFile``, ``zlib.error``, ``EOFError``), object arrays, unconvertible values."""
    try:
        yield
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"{path}: {err}") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"{path}: cannot read this file ({type(err).__name__}: {err})") from None


def _load(
    path: Path,
    format: str,
    target: str,
    energy_unit,
    length_unit,
    output_energy_unit,
    index: str,
    energy_key: str,
    forces_key: str,
    cache_dir,
) -> AtomsData:
    """``load_atoms_data`` after the file and format checks."""
    format = detect_format(path) if format == "auto" else format
    if format == "qm9":
        if energy_unit not in (None, "Hartree") or length_unit not in (None, "Å"):
            raise ValueError(f"{path}: QM9 units are fixed (Hartree -> eV, Å); do not set energy_unit/length_unit")
        return read_qm9_npz(path, check_qm9_target(target))
    if target != "energy":
        raise ValueError(f"{path}: target {target!r} needs a QM9 file; {format} files provide target 'energy'")
    if format == "md17":
        data = read_md17_npz(path, energy_unit, length_unit)
    else:
        settings = dict(
            format=format,
            index=index,
            energy_key=energy_key,
            forces_key=forces_key,
            energy_unit=energy_unit,
            length_unit=length_unit,
        )
        build = lambda: read_ase_file(path, index, energy_key, forces_key, energy_unit, length_unit)  # noqa: E731
        data = cached(path, settings, cache_dir, build)
    return convert_units(data, output_energy_unit or data.units["energy"], "Å")


def convert_units(data: AtomsData, energy_unit: str, length_unit: str = "Å") -> AtomsData:
    """``data`` with energies, forces, positions and cell in the given units (exact factors)."""
    energy_unit, length_unit = canonical_unit(energy_unit, "energy"), canonical_unit(length_unit, "length")
    e = energy_factor(data.units["energy"], energy_unit)
    r = length_factor(data.units["length"], length_unit)
    if e == 1.0 and r == 1.0:
        return replace(data, units={**data.units, "energy": energy_unit, "length": length_unit})
    return replace(
        data,
        pos=data.pos * r,
        y=data.y * e,
        forces=None if data.forces is None else data.forces * (e / r),
        cell=None if data.cell is None else data.cell * r,
        units={**data.units, "energy": energy_unit, "length": length_unit},
    )
