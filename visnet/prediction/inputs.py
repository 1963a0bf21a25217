"""Inputs of ``visnet.predict``: Atoms, files, SMILES, names and RDKit molecules as structures to
predict, each checked once; a failing input raises or becomes an error entry (``errors="skip"``)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ase import Atoms

from visnet.structures.checks import check_atoms
from visnet.structures.molecules import atoms_from_mol, is_rdkit_mol, load_structures, read_frames

__all__ = ["PendingStructure", "as_list", "check_structures", "fail_structure", "read_inputs"]


@dataclass
class PendingStructure:
    """One structure to predict (or an input that failed to load: ``atoms`` None, ``error`` set)."""

    input_index: int
    atoms: Atoms | None
    name: str
    source: str
    frame: int | None = None
    smiles: str | None = None
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        frame = "" if self.frame is None else f" frame {self.frame}"
        return f"input {self.input_index}{frame} ({self.name})"


def as_list(inputs: Any) -> list[Any]:
    """The inputs as a list: a single Atoms / string / path / RDKit Mol becomes a list of one."""
    if isinstance(inputs, (Atoms, str, os.PathLike)) or is_rdkit_mol(inputs):
        return [inputs]
    if isinstance(inputs, Iterable):
        return list(inputs)
    raise TypeError(
        f"inputs must be Atoms, a file path, SMILES, an RDKit Mol or a list of them; got {type(inputs).__name__}"
    )


def _from_atoms(atoms: Atoms, index: int) -> PendingStructure:
    clean = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    name = str(atoms.info.get("name") or atoms.get_chemical_formula())
    return PendingStructure(index, clean, name, f"Atoms (input {index})")


def _from_loaded(atoms: Atoms, index: int) -> PendingStructure:
    info = atoms.info
    smiles = info.get("smiles")
    name = smiles or str(info.get("name") or atoms.get_chemical_formula())
    frame = info.get("frame")
    source = str(info.get("source", ""))
    if frame is not None:
        source = f"{source} frame {frame}"
    return PendingStructure(index, atoms, name, source, frame=frame, smiles=smiles)


def _load_input(item: Any, index: int, seed: int) -> list[PendingStructure]:
    """The structures of one input (several for a multi-frame file)."""
    if isinstance(item, Atoms):
        if len(item) == 0:
            raise ValueError("the Atoms object holds no atoms")
        return [_from_atoms(item, index)]
    if is_rdkit_mol(item):
        return [_from_loaded(atoms_from_mol(item), index)]
    if isinstance(item, os.PathLike):
        return [_from_loaded(a, index) for a in read_frames(item)]
    if isinstance(item, str):
        return [_from_loaded(a, index) for a in load_structures(item, seed=seed)]
    raise TypeError(
        f"cannot predict an input of type {type(item).__name__}: give Atoms, a file path, SMILES or an RDKit Mol"
    )


def _describe(item: Any) -> str:
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    return type(item).__name__


def read_inputs(items: list[Any], seed: int, errors: str, progress: bool) -> list[PendingStructure]:
    """Every structure of every input, in order; failures raise or become error entries."""
    from tqdm.auto import tqdm

    structures: list[PendingStructure] = []
    for index, item in enumerate(tqdm(items, desc="reading inputs", unit="input", disable=not progress)):
        try:
            structures.extend(_load_input(item, index, seed))
        except (ValueError, FileNotFoundError, TypeError) as err:
            if errors == "raise":
                raise type(err)(f"input {index}: {err}" if len(items) > 1 else str(err)) from None
            structures.append(
                PendingStructure(index, None, _describe(item), _describe(item), error=f"input {index}: {err}")
            )
    return structures


def check_structures(structures: list[PendingStructure], elements: frozenset[int], errors: str) -> None:
    """Mark (skip) or raise for structures with elements the models do not cover or bad geometry."""
    for s in structures:
        if s.error is not None:
            continue
        try:
            check_atoms(s.atoms, elements)
        except ValueError as err:
            fail_structure(s, err, errors)


def fail_structure(s: PendingStructure, err: Exception, errors: str) -> None:
    message = f"{s.label}: {err}"
    if errors == "raise":
        raise type(err)(message) from None
    s.error = message
