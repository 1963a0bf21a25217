"""The final files of a screen, written from its shards in chunk order (one shard in memory at a
time), each atomically: the results (``.csv`` as ``visnet.write_csv`` writes it, ``.parquet`` with
the same columns, or ``.extxyz`` with the geometry and every property) and the errors file
(``<output>.errors.csv``: ``index``, ``source``, ``reason`` of every structure without results)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from visnet.files.atomic import atomic_open

if TYPE_CHECKING:  # pyarrow (the ``screen`` extra) is imported where it is used
    import pyarrow as pa

    from visnet.prediction.shard_rows import RowLayout

__all__ = ["OUTPUT_SUFFIXES", "errors_path", "write_errors", "write_output"]

OUTPUT_SUFFIXES = (".csv", ".parquet", ".extxyz")
ERROR_COLUMNS = ("index", "source", "reason")


def errors_path(output: str | Path) -> Path:
    """The errors file of ``output``: ``<output>.errors.csv`` next to it."""
    output = Path(output)
    return output.with_name(output.name + ".errors.csv")


def _csv_value(value: object) -> object:
    return "" if value is None else value


def _write_csv(tables: Iterable[pa.Table], layout: RowLayout, path: Path) -> None:
    columns = layout.columns()
    with atomic_open(path, "w", suffix=".csv") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for table in tables:
            data = table.select(columns).to_pydict()
            writer.writerows([_csv_value(v) for v in row] for row in zip(*(data[c] for c in columns)))


def _write_parquet(tables: Iterable[pa.Table], layout: RowLayout, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = layout.columns()
    schema = pa.schema([layout.schema().field(c) for c in columns])
    with atomic_open(path, "wb", suffix=".parquet") as handle:
        with pq.ParquetWriter(handle, schema) as writer:
            for table in tables:
                writer.write_table(table.select(columns))


def _write_extxyz(tables: Iterable[pa.Table], layout: RowLayout, path: Path) -> None:
    from ase.io.extxyz import write_extxyz

    with atomic_open(path, "w", suffix=".extxyz") as handle:
        for table in tables:
            write_extxyz(handle, [layout.atoms(row) for row in table.to_pylist()])


def write_output(tables: Iterable[pa.Table], layout: RowLayout, path: str | Path) -> Path:
    """Write the rows of ``tables`` (shards in order) to ``path`` by its suffix (``OUTPUT_SUFFIXES``).

    Raises:
        ValueError: another suffix, or ``.extxyz`` without the geometry in the shards.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        _write_csv(tables, layout, path)
    elif suffix == ".parquet":
        _write_parquet(tables, layout, path)
    elif suffix == ".extxyz":
        if not layout.geometry:
            raise ValueError(f"{path}: an extended-XYZ output needs the geometry in the shards")
        _write_extxyz(tables, layout, path)
    else:
        raise ValueError(f"{path}: a screen writes {', '.join(OUTPUT_SUFFIXES)} files")
    return path


def write_errors(tables: Iterable[pa.Table], path: str | Path) -> int:
    """Write ``index``, ``source`` and ``reason`` of every row with an error to ``path`` (CSV,
    atomically; no file, and a stale one removed, when there are none). Returns their number."""
    import pyarrow.compute as pc

    path = Path(path)
    count = 0
    with atomic_open(path, "w", suffix=".csv") as handle:
        writer = csv.writer(handle)
        writer.writerow(ERROR_COLUMNS)
        for table in tables:
            failed = table.filter(pc.not_equal(table["error"], "")).select(["index", "source", "error"])
            rows = list(zip(*failed.to_pydict().values()))
            writer.writerows(rows)
            count += len(rows)
    if count == 0:
        path.unlink()
    return count
