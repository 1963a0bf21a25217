"""The shard store of a screen: ``<output>.shards/`` with ``manifest.json`` (what the run computes:
its inputs, models and options, and the plan of its collection) and one Parquet file per finished
chunk (``chunk-0000012.parquet``), each written atomically. A chunk is done exactly when its file
exists, so a run that is killed loses at most the chunks it was computing, and a rerun computes
only the missing chunks: no row is lost, duplicated or computed twice.

A rerun whose inputs, models or options differ from the manifest's is refused, naming both, rather
than mixing two runs' rows. Several processes (ranks, nodes on a shared file system) open the same
store: the manifest is created once, under a file lock.
"""

from __future__ import annotations

import fcntl
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from visnet.files.atomic import atomic_open, atomic_write_text
from visnet.prediction.collection import Plan

__all__ = ["FORMAT", "ShardStore", "shards_folder"]

FORMAT = "visnet-screen-shards/1"
MANIFEST = "manifest.json"
_SHARD = re.compile(r"^chunk-(\d+)\.parquet$")


def shards_folder(output: str | Path) -> Path:
    """The store of the run writing ``output``: ``<output>.shards/`` next to it."""
    output = Path(output)
    return output.with_name(output.name + ".shards")


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _brief(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _difference(old: Any, new: Any) -> tuple[str, str]:
    """The first differing entry of two manifests' values (a dict's key, a list's item), as text."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return f"{key} = {_brief(old.get(key))}", f"{key} = {_brief(new.get(key))}"
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for a, b in zip(old, new):
            if a != b:
                return _brief(a), _brief(b)
    return _brief(old), _brief(new)


class ShardStore:
    """A screen's shards: ``manifest``, ``plan``, and the Parquet file of each finished chunk."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder = folder
        self.manifest = manifest
        self.plan = Plan.from_json(manifest["plan"])

    @classmethod
    def open(cls, folder: str | Path, run: dict[str, Any], make_plan: Callable[[], Plan]) -> ShardStore:
        """Resume the store at ``folder`` if it was made for ``run`` (keys ``inputs``, ``model``,
        ``options``), else create it with the plan ``make_plan()`` gives.

        Raises:
            ValueError: the store holds another run (the message names what differs, old and
                new), or ``folder`` holds something that is no shard store.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / MANIFEST
        with _locked(folder):
            if path.exists():
                manifest = cls._read(path)
                cls._check(folder, manifest, run)
            else:
                if any(_SHARD.match(p.name) for p in folder.iterdir()):
                    raise ValueError(f"{folder} holds shards but no {MANIFEST}: delete it to start over")
                manifest = {"format": FORMAT, **run, "plan": make_plan().to_json()}
                atomic_write_text(path, json.dumps(manifest) + "\n")
        return cls(folder, manifest)

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            manifest = None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"{path} is not a screening manifest; delete {path.parent} to start over")
        return manifest

    @staticmethod
    def _check(folder: Path, manifest: dict[str, Any], run: dict[str, Any]) -> None:
        run = json.loads(json.dumps(run))  # tuples -> lists, as the manifest holds them
        for key in ("inputs", "model", "options"):
            if manifest.get(key) != run[key]:
                old, new = _difference(manifest.get(key), run[key])
                raise ValueError(
                    f"{folder} holds a screen of other {key}: {old} there, {new} now; "
                    f"rerun with the same inputs, model and options to resume, or delete {folder} to start over"
                )

    def shard(self, chunk: int) -> Path:
        """The Parquet file of ``chunk``."""
        return self.folder / f"chunk-{chunk:07d}.parquet"

    def done(self) -> set[int]:
        """The chunks whose shard exists."""
        return {int(m.group(1)) for p in self.folder.iterdir() if (m := _SHARD.match(p.name))}

    def write(self, chunk: int, table: pa.Table) -> Path:
        """Write the shard of ``chunk`` atomically (it counts as done once the file is there)."""
        if table.num_rows != len(self.plan.chunk_range(chunk)):
            raise RuntimeError(
                f"chunk {chunk} has {table.num_rows} rows, the plan says {len(self.plan.chunk_range(chunk))}"
            )
        with atomic_open(self.shard(chunk), "wb", suffix=".parquet") as handle:
            pq.write_table(table, handle)
        return self.shard(chunk)

    def tables(self) -> Iterator[pa.Table]:
        """Every shard in chunk order (one in memory at a time).

        Raises:
            RuntimeError: a chunk has no shard (the run is not complete).
        """
        for chunk in range(self.plan.chunks):
            path = self.shard(chunk)
            if not path.exists():
                raise RuntimeError(f"chunk {chunk} has no shard in {self.folder}: the screen is not complete")
            yield pq.read_table(path)
