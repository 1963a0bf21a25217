"""Prediction results: one ``Prediction`` per structure, tables (list of dicts / pandas), CSV and JSON.

Table columns carry their unit, e.g. ``energy [eV]``, ``mu [D]``, ``mu_vector_x [D]``; per-atom
arrays (forces) are left out of tables and kept in JSON.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from visnet.files.atomic import atomic_write_text

__all__ = ["Prediction", "results_to_table", "to_dataframe", "write_csv", "write_json"]


@dataclass
class Prediction:
    """Predicted properties of one structure.

    Attributes:
        index: position in the list ``visnet.predict`` returned.
        input_index: which element of the inputs the structure came from (a multi-frame file or
            a list gives several structures per input).
        name: file stem, SMILES, ``atoms.info["name"]`` or the chemical formula.
        source: where the geometry came from (file path and frame, SMILES and embedding method, ...).
        atoms: the geometry used (Å; after relaxation when ``relax=True``), None if it failed to load.
        properties: name -> value: floats for molecular properties, (3,) arrays for dipole vectors
            ("<key>_vector"), (num_atoms, 3) arrays for "forces".
        units: name -> unit of each property ("eV", "eV/Å", "D", "bohr^3", ...).
        error: why the structure has no properties (only with ``errors="skip"``), else None.
        frame: frame number within a file, else None.
        smiles: the SMILES string the geometry was built from, else None.
        info: extras, e.g. ``{"relaxation": {"steps": 12, "fmax": 0.03, "converged": True}}``.
    """

    index: int
    input_index: int
    name: str
    source: str
    atoms: Atoms | None
    properties: dict[str, Any] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    frame: int | None = None
    smiles: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the structure was predicted (no error)."""
        return self.error is None

    @property
    def formula(self) -> str:
        return self.atoms.get_chemical_formula() if self.atoms is not None else ""

    @property
    def num_atoms(self) -> int:
        return len(self.atoms) if self.atoms is not None else 0

    def __getitem__(self, name: str) -> Any:
        """The value of property ``name`` (KeyError lists the available ones)."""
        if name not in self.properties:
            raise KeyError(
                f"no property {name!r} in this result (error: {self.error})"
                if self.error
                else f"no property {name!r}; available: {sorted(self.properties)}"
            )
        return self.properties[name]

    def row(self) -> dict[str, Any]:
        """One table row: identity columns, then ``"<property> [<unit>]"`` scalars and vector components."""
        row: dict[str, Any] = {
            "index": self.index,
            "input": self.input_index,
            "name": self.name,
            "formula": self.formula,
            "num_atoms": self.num_atoms,
        }
        for name, value in self.properties.items():
            unit = self.units.get(name, "")
            array = np.asarray(value)
            if array.ndim == 0:
                row[f"{name} [{unit}]"] = float(array)
            elif array.shape == (3,):
                row.update({f"{name}_{c} [{unit}]": float(v) for c, v in zip("xyz", array)})
        row.update(
            smiles=self.smiles or "",
            frame="" if self.frame is None else self.frame,
            source=self.source,
            error=self.error or "",
        )
        return row

    def to_dict(self, geometry: bool = True) -> dict[str, Any]:
        """JSON-ready dict: identity, properties (arrays as lists), units, error, info and, with
        ``geometry``, ``numbers`` (N,), ``positions`` (N, 3) Å, and ``cell``/``pbc`` if periodic."""
        out: dict[str, Any] = {
            "index": self.index,
            "input": self.input_index,
            "name": self.name,
            "formula": self.formula,
            "num_atoms": self.num_atoms,
            "smiles": self.smiles,
            "frame": self.frame,
            "source": self.source,
            "error": self.error,
            "properties": {k: _jsonable(v) for k, v in self.properties.items()},
            "units": dict(self.units),
            "info": _jsonable(self.info),
        }
        if geometry and self.atoms is not None:
            out["numbers"] = self.atoms.numbers.tolist()
            out["positions"] = self.atoms.positions.tolist()
            if self.atoms.pbc.any():
                out.update(cell=np.asarray(self.atoms.cell).tolist(), pbc=self.atoms.pbc.tolist())
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def results_to_table(results: Sequence[Prediction]) -> list[dict[str, Any]]:
    """One dict per result (see ``Prediction.row``), every row with the same columns (missing: "").

    Args:
        results: what ``visnet.predict`` returned.

    Returns:
        One dict per result: index, input, name, formula, num_atoms, each scalar property and the
        components of each 3-vector with the unit in the column name (``"gap [eV]"``; per-atom
        properties such as forces are left out), smiles, frame, source and error.
    """
    rows = [r.row() for r in results]
    columns = _columns(rows)
    return [{c: row.get(c, "") for c in columns} for row in rows]


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Union of the rows' keys: identity first, then properties in first-seen order, source/error last."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    tail = ["smiles", "frame", "source", "error"]
    return [c for c in seen if c not in tail] + [c for c in tail if c in seen]


def to_dataframe(results: Sequence[Prediction]) -> Any:
    """A pandas DataFrame of ``results_to_table(results)`` (needs pandas).

    Args:
        results: what ``visnet.predict`` returned.

    Returns:
        A ``pandas.DataFrame``, one row per result.
    """
    try:
        import pandas as pd
    except ImportError as err:
        raise ImportError("to_dataframe needs pandas (pip install pandas); results_to_table gives plain dicts") from err
    return pd.DataFrame(results_to_table(results))


def write_csv(results: Sequence[Prediction], path: str | os.PathLike) -> Path:
    """Write ``results_to_table(results)`` as CSV (atomic write); returns the path.

    Args:
        results: what ``visnet.predict`` returned.
        path: the CSV file to write (replaced atomically).

    Returns:
        The path written.
    """
    rows = results_to_table(results)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(rows) if rows else ["index", "name", "error"])
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def write_json(results: Sequence[Prediction], path: str | os.PathLike, geometry: bool = True) -> Path:
    """Write every result (properties incl. forces, units, geometry) as a JSON list (atomic write).

    Args:
        results: what ``visnet.predict`` returned.
        path: the JSON file to write (replaced atomically).
        geometry: include each structure's numbers and positions (Å).

    Returns:
        The path written.
    """
    payload = [r.to_dict(geometry=geometry) for r in results]
    return atomic_write_text(path, json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
