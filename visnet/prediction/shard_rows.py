"""The row layout of a screen: which columns a shard holds, their Arrow types, and the conversion
of ``Prediction`` objects to an Arrow table and back to table rows and ``ase.Atoms``.

The columns are those of ``visnet.results_to_table`` (``index``, ``input``, ``name``, ``formula``,
``num_atoms``, one ``"<property> [<unit>]"`` column per scalar, ``_x/_y/_z`` columns per vector,
then ``smiles``, ``frame``, ``source``, ``error``), fixed before any structure is read so that every
shard of every process has the same schema. With ``geometry`` the shards also keep the atoms and
the per-atom properties (``atoms:numbers`` (N,), ``atoms:positions`` (N*3,) Å, ``atoms:cell`` (9,)
Å, ``atoms:pbc`` (3,), ``atoms:<property>`` flattened) for an extended-XYZ output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from ase import Atoms

from visnet.prediction.property_models import PropertyModel
from visnet.prediction.results import Prediction

__all__ = ["ATOMS_PREFIX", "PropertyColumn", "RowLayout", "layout_for"]

ATOMS_PREFIX = "atoms:"
_HEAD = (("index", pa.int64()), ("input", pa.int64()), ("name", pa.string()), ("formula", pa.string()))
_TAIL = (("smiles", pa.string()), ("frame", pa.int64()), ("source", pa.string()), ("error", pa.string()))
_GEOMETRY = (
    ("numbers", pa.list_(pa.int64())),
    ("positions", pa.list_(pa.float64())),
    ("cell", pa.list_(pa.float64())),
    ("pbc", pa.list_(pa.bool_())),
)


@dataclass(frozen=True)
class PropertyColumn:
    """One predicted property: ``kind`` "scalar" (one column), "vector" ((3,): three columns) or
    "per_atom" ((N, ...): kept only with geometry)."""

    name: str
    unit: str
    kind: str

    def columns(self) -> list[str]:
        """The table columns of this property (none for a per-atom one)."""
        if self.kind == "scalar":
            return [f"{self.name} [{self.unit}]"]
        if self.kind == "vector":
            return [f"{self.name}_{c} [{self.unit}]" for c in "xyz"]
        return []


@dataclass(frozen=True)
class RowLayout:
    """The columns of a screen's rows: ``properties`` in report order, ``geometry`` kept or not."""

    properties: tuple[PropertyColumn, ...]
    geometry: bool

    def columns(self) -> list[str]:
        """Table columns (CSV/Parquet output), in ``visnet.results_to_table`` order."""
        props = [c for p in self.properties for c in p.columns()]
        return [name for name, _ in _HEAD] + ["num_atoms", *props] + [name for name, _ in _TAIL]

    def schema(self) -> pa.Schema:
        """The Arrow schema of a shard (the table columns, then the geometry columns if kept)."""
        props = [(c, pa.float64()) for p in self.properties for c in p.columns()]
        fields = [*_HEAD, ("num_atoms", pa.int64()), *props, *_TAIL]
        if self.geometry:
            fields += [(ATOMS_PREFIX + name, kind) for name, kind in _GEOMETRY]
            fields += [(ATOMS_PREFIX + p.name, pa.list_(pa.float64())) for p in self.properties if p.kind == "per_atom"]
        return pa.schema(fields)

    def table(self, results: Sequence[Prediction]) -> pa.Table:
        """The shard of ``results`` (one row each, in order)."""
        schema = self.schema()
        rows = [self._row(r) for r in results]
        return pa.table({f.name: pa.array([row.get(f.name) for row in rows], f.type) for f in schema}, schema=schema)

    def _row(self, result: Prediction) -> dict[str, Any]:
        row = {k: (None if v == "" and k not in ("smiles", "error") else v) for k, v in result.row().items()}
        if self.geometry:
            atoms = result.atoms if result.atoms is not None else Atoms()
            row[ATOMS_PREFIX + "numbers"] = atoms.numbers.tolist()
            row[ATOMS_PREFIX + "positions"] = atoms.positions.reshape(-1).tolist()
            row[ATOMS_PREFIX + "cell"] = np.asarray(atoms.cell).reshape(-1).tolist()
            row[ATOMS_PREFIX + "pbc"] = atoms.pbc.tolist()
            for p in self.properties:
                if p.kind == "per_atom" and p.name in result.properties:
                    row[ATOMS_PREFIX + p.name] = np.asarray(result.properties[p.name]).reshape(-1).tolist()
        return row

    def atoms(self, row: dict[str, Any]) -> Atoms:
        """The structure of a shard row with its results: ``info`` holds the identity columns and
        each scalar/vector property by name (units in ``info["units"]``), ``arrays`` the per-atom
        ones (a row that failed to read: no atoms, ``info["error"]``)."""
        numbers = row[ATOMS_PREFIX + "numbers"]
        atoms = Atoms(
            numbers=numbers,
            positions=np.reshape(row[ATOMS_PREFIX + "positions"], (-1, 3)),
            cell=np.reshape(row[ATOMS_PREFIX + "cell"], (3, 3)),
            pbc=row[ATOMS_PREFIX + "pbc"],
        )
        info = {k: row[k] for k in ("index", "input", "name", "source", "frame", "error") if row[k] not in (None, "")}
        for p in self.properties:
            values = [row[c] for c in p.columns()] if p.kind != "per_atom" else row[ATOMS_PREFIX + p.name]
            if values is None or None in values:
                continue
            if p.kind == "per_atom":
                array = np.reshape(values, (len(numbers), -1))
                atoms.arrays[p.name] = array[:, 0] if array.shape[1] == 1 else array
            else:
                info[p.name] = values[0] if p.kind == "scalar" else np.asarray(values)
        info["units"] = " ".join(f"{p.name}={p.unit}" for p in self.properties)
        atoms.info.update(info)
        return atoms

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for the shard manifest)."""
        return {"properties": [[p.name, p.unit, p.kind] for p in self.properties], "geometry": self.geometry}


def layout_for(models: Sequence[PropertyModel], want: set[str], geometry: bool) -> RowLayout:
    """The layout of what ``models`` report for the property names ``want`` (the order of
    ``visnet.predict``'s results: model by model, each model's outputs in its order)."""
    columns = []
    for m in models:
        for name, out in m.outputs.items():
            if name not in want:
                continue
            vector = not out.per_atom and m.info.vector_output and name == f"{m.info.output_key}_vector"
            kind = "per_atom" if out.per_atom else "vector" if vector else "scalar"
            columns.append(PropertyColumn(name, out.unit, kind))
    return RowLayout(tuple(columns), geometry)
