"""Committees: run folders as members, and members whose energies are not comparable.

A run folder ``runs/<name>`` written by ``visnet fit --ensemble N`` holds ``member_0/model.pt``
... ``member_{N-1}/model.pt``; wherever a model may be given (the calculator, ``visnet md
--model``) such a folder stands for all of its members, and a plain run folder for its one
``model.pt``.

Members trained on energies with different zeros (another level of theory, total vs atomisation
energies) agree on forces but not on energies: their mean energy mixes references and their
energy std measures the offset, not an uncertainty. ``level_of_theory_mismatch`` detects it from
the members' metadata, ``energy_reference_mismatch`` from one evaluation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MEMBER_PREFIX",
    "MODEL_FILE",
    "REFERENCE_SPREAD",
    "EnergyReferenceWarning",
    "committee_members",
    "energy_reference_mismatch",
    "expand_committee",
    "level_of_theory_mismatch",
]

MEMBER_PREFIX = "member_"
MODEL_FILE = "model.pt"
_MEMBER = re.compile(rf"{MEMBER_PREFIX}(\d+)")

# Energy spread between members (eV/atom) above which, with forces that agree, the members are
# taken to have different energy references: members sharing a reference differ by meV/atom in
# distribution and by ~0.1 eV/atom far outside it, and then their forces disagree too.
REFERENCE_SPREAD = 1.0
# ... provided the spread per atom also exceeds this many times the largest force std (eV/Å).
FORCE_STD_FACTOR = 10.0


class EnergyReferenceWarning(UserWarning):
    """Committee members whose energies have different references: energy and energy_std are not
    meaningful, forces and forces_std are."""


def committee_members(folder: str | os.PathLike) -> list[Path]:
    """The model files of a run folder, in member order.

    Args:
        folder: an ensemble run folder (``member_k/model.pt``) or a plain run folder (``model.pt``).

    Raises:
        ValueError: a member folder without ``model.pt`` (not trained yet?), or no model at all.
    """
    folder = Path(folder)
    members = sorted((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _MEMBER.fullmatch(p.name)))
    if not members:
        if (folder / MODEL_FILE).is_file():
            return [folder / MODEL_FILE]
        raise ValueError(f"{folder} holds neither {MODEL_FILE} nor {MEMBER_PREFIX}k/{MODEL_FILE} folders")
    missing = [str(p / MODEL_FILE) for _, p in members if not (p / MODEL_FILE).is_file()]
    if missing:
        raise ValueError(f"committee {folder}: no model file {', '.join(missing)} (member not trained to the end?)")
    return [p / MODEL_FILE for _, p in members]


def expand_committee(specs: Sequence[Any]) -> list[Any]:
    """``specs`` with every folder replaced by its members' model files (``committee_members``);
    files, bundled-model names and modules are kept as they are."""
    expanded: list[Any] = []
    for spec in specs:
        is_folder = isinstance(spec, (str, os.PathLike)) and Path(spec).is_dir()
        expanded.extend(committee_members(spec) if is_folder else [spec])
    return expanded


def level_of_theory_mismatch(metadata: Sequence[dict[str, Any]], labels: Sequence[str]) -> str | None:
    """A one-line warning when members record different levels of theory, else None.

    Args:
        metadata: each member's metadata (``visnet.io.model_files.model_metadata``).
        labels: each member's name, for the message.
    """
    recorded = [
        (f"member {k} ({label})", str(meta["level_of_theory"]))
        for k, (meta, label) in enumerate(zip(metadata, labels))
        if meta.get("level_of_theory") not in (None, "", "unknown")
    ]
    if len({theory for _, theory in recorded}) < 2:
        return None
    listed = "; ".join(f"{member}: {theory}" for member, theory in recorded)
    return (
        f"committee members were trained at different levels of theory ({listed}): their energies have "
        "different references, so the mean energy and energy_std are not meaningful (forces and forces_std are)"
    )


def energy_reference_mismatch(energies: Sequence[float], forces_std: np.ndarray, num_atoms: int) -> str | None:
    """A one-line warning when the members' energies differ by a reference offset, else None.

    Args:
        energies: (M,) each member's energy of one structure, eV.
        forces_std: (N, 3) committee force std of that structure, eV/Å.
        num_atoms: N.

    An offset is assumed when the members' energies spread by more than ``REFERENCE_SPREAD``
    eV/atom while their forces agree (largest force std under 1/``FORCE_STD_FACTOR`` of that).
    """
    spread = float(np.max(energies) - np.min(energies))
    per_atom = spread / max(num_atoms, 1)
    largest_force_std = float(np.sqrt(np.square(forces_std).sum(axis=1)).max())
    if per_atom <= REFERENCE_SPREAD or per_atom <= FORCE_STD_FACTOR * largest_force_std:
        return None
    return (
        f"committee members' energies differ by {spread:.4g} eV ({per_atom:.3g} eV/atom) while their forces "
        f"agree (largest force std {largest_force_std:.3g} eV/Å): the members have different energy references "
        "(other level of theory, total vs atomisation energies?), so the mean energy and energy_std mix "
        "references and are not meaningful; forces and forces_std are fine"
    )
