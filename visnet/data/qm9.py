"""QM9 from the shared ragged npz (``qm9_full.npz`` / ``qm9_subset5k.npz``).

Layout: ``z`` (atoms,) uint8, ``pos`` (atoms, 3) Å, ``ptr`` (molecules + 1,), ``targets``
(molecules, 19) in QM9's original units (Debye, bohr³, Hartree, bohr², cal/mol/K, GHz), with
``target_names`` / ``target_units`` in PyG's column order. Energies are converted from Hartree to eV
here, so errors compare with PyG's and the paper's tables (meV).

Building the same file from other sources (no internet needed for the first):

* ``pip install qm9pack`` (MIT, by QM9's first author) carries QM9 as CSV inside its wheel: read
  its per-molecule coordinates and properties, drop the 3,054 "uncharacterized" molecules, and
  write the keys above with the 19 columns in the order of ``QM9_TARGETS`` (units as listed).
* PyG's ``torch_geometric.datasets.QM9(root)`` (downloads the raw SDF/CSV once): its ``data.z``,
  ``data.pos``, ``data.y[:, :19]`` (already in eV for energies) and the slice pointers give the
  same molecules; ``qm9_npz_from_pyg`` below converts such a dataset object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from visnet.data.structures import AtomsData
from visnet.units import energy_factor

# name -> (unit in the npz, unit used for training, output head of the model, extensive?)
QM9_TARGETS: dict[str, tuple[str, str, str, bool]] = {
    "mu": ("Debye", "D", "dipole", False),
    "alpha": ("bohr^3", "bohr^3", "scalar", True),
    "homo": ("Hartree", "eV", "scalar", False),
    "lumo": ("Hartree", "eV", "scalar", False),
    "gap": ("Hartree", "eV", "scalar", False),
    "r2": ("bohr^2", "bohr^2", "spatial_extent", False),
    "zpve": ("Hartree", "eV", "scalar", True),
    "U0": ("Hartree", "eV", "scalar", True),
    "U": ("Hartree", "eV", "scalar", True),
    "H": ("Hartree", "eV", "scalar", True),
    "G": ("Hartree", "eV", "scalar", True),
    "Cv": ("cal/(mol K)", "cal/(mol K)", "scalar", True),
    "U0_atom": ("Hartree", "eV", "scalar", True),
    "U_atom": ("Hartree", "eV", "scalar", True),
    "H_atom": ("Hartree", "eV", "scalar", True),
    "G_atom": ("Hartree", "eV", "scalar", True),
    "A": ("GHz", "GHz", "scalar", False),
    "B": ("GHz", "GHz", "scalar", False),
    "C": ("GHz", "GHz", "scalar", False),
}
QM9_KEYS = ("z", "pos", "ptr", "targets", "target_names")
LEVEL_OF_THEORY = "B3LYP/6-31G(2df,p) (QM9)"


def check_qm9_target(target: str) -> str:
    """``target`` if it is a QM9 column name, else a ``ValueError`` listing the valid names."""
    if target not in QM9_TARGETS:
        raise ValueError(f"unknown QM9 target {target!r}; valid targets: {list(QM9_TARGETS)}")
    return target


def head_for_target(target: str) -> str:
    """The ViSNet output head for a target: "energy" for potential energies, else the QM9 table's."""
    return "energy" if target == "energy" else QM9_TARGETS[check_qm9_target(target)][2]


def is_extensive(target: str) -> bool:
    """Whether a target grows with molecule size (gets per-element references and mean 0)."""
    return target == "energy" or QM9_TARGETS[check_qm9_target(target)][3]


def is_qm9_npz(keys: set[str]) -> bool:
    return {"ptr", "targets", "target_names"} <= keys


def read_qm9_npz(path: str | Path, target: str) -> AtomsData:
    """Read one target of the QM9 npz, energies converted Hartree -> eV.

    Args:
        path: ``qm9_full.npz`` or ``qm9_subset5k.npz`` (or a file in the same layout).
        target: a column name, e.g. "U0", "mu", "alpha", "r2" (see ``QM9_TARGETS``).

    Returns:
        ``AtomsData`` with ``y`` (molecules,) in the training unit of the target (eV for energies).

    Raises:
        ValueError: unknown target, missing keys, a column whose unit is not the expected one.
    """
    path = Path(path)
    check_qm9_target(target)
    file_unit, unit, _, _ = QM9_TARGETS[target]
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in QM9_KEYS if k not in npz.files]
        if missing:
            raise ValueError(f"{path}: not a QM9 npz: missing keys {missing} (found {sorted(npz.files)})")
        names = npz["target_names"].tolist()
        if target not in names:
            raise ValueError(f"{path}: target {target!r} not in the file's target_names {names}")
        column = names.index(target)
        units = npz["target_units"].tolist() if "target_units" in npz.files else [None] * len(names)
        if units[column] not in (None, file_unit):
            raise ValueError(f"{path}: target {target!r} has unit {units[column]!r}, expected {file_unit!r}")
        y = npz["targets"][:, column].astype(np.float64)
        z, pos, ptr = npz["z"].astype(np.int64), npz["pos"].astype(np.float64), npz["ptr"].astype(np.int64)
    if file_unit == "Hartree":
        y = y * energy_factor("Hartree", "eV")
    data_units = {target: unit, "length": "Å"}
    if unit == "eV" and is_extensive(target):
        data_units["energy"] = "eV"
    data = AtomsData(
        z=z,
        pos=pos,
        ptr=ptr,
        y=y,
        target=target,
        units=data_units,
        source=str(path),
        info={"theory": LEVEL_OF_THEORY, "name": "QM9"},
    )
    return data.validate()


def qm9_npz_from_pyg(dataset: Any, path: str | Path) -> Path:
    """Write a PyG ``QM9`` dataset object in the shared npz layout (energies back to Hartree).

    Args:
        dataset: ``torch_geometric.datasets.QM9`` (its first 19 ``y`` columns are PyG's units:
            eV for energies, the rest as in ``QM9_TARGETS``).
        path: the npz to write (atomically).
    """
    from visnet.data.cache import atomic_savez

    zs, poss, ys = [], [], []
    for data in dataset:
        zs.append(data.z.numpy().astype(np.uint8))
        poss.append(data.pos.numpy().astype(np.float32))
        ys.append(data.y.numpy().reshape(-1)[:19].astype(np.float64))
    targets = np.stack(ys)
    to_hartree = energy_factor("eV", "Hartree")
    for i, (file_unit, *_rest) in enumerate(QM9_TARGETS.values()):
        if file_unit == "Hartree":
            targets[:, i] *= to_hartree
    natoms = np.array([len(z) for z in zs], dtype=np.int32)
    return atomic_savez(
        path,
        z=np.concatenate(zs),
        pos=np.concatenate(poss),
        ptr=np.concatenate([[0], np.cumsum(natoms)]).astype(np.int64),
        natoms=natoms,
        targets=targets,
        target_names=np.array(list(QM9_TARGETS)),
        target_units=np.array([v[0] for v in QM9_TARGETS.values()]),
    )
