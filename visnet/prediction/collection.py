"""A collection to screen: files, directories and globs expanded to one ordered list of files, and
a plan of it made in one pass: how many structures each file holds and where each chunk of
``chunk_size`` structures starts (file, frame, byte offset), so that any process can read any
chunk without reading the chunks before it.

Order: the inputs as given; a directory gives its files (recursively, hidden ones left out) sorted
by path, a glob its matches sorted by path. Every frame of a file is one structure; a part of a
file that cannot be read is one structure too (it becomes a row with an error), so the count of a
file never depends on who reads it.

Extended/plain XYZ files (``.xyz``, ``.extxyz``) are split into frames by their atom-count lines
without parsing (about a microsecond a line), and each chunk's start is a byte offset: a process
seeks there and parses only its own frames. Other formats go through ``ase.io.iread``; a process
parses the frames of such a file that lie before its chunk too (one file per structure, the
usual layout of a directory, costs nothing extra).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from visnet.files.paths import refuse_folder

__all__ = [
    "XYZ_SUFFIXES",
    "ChunkStart",
    "Plan",
    "SourceFile",
    "expand_inputs",
    "is_collection_item",
    "make_plan",
    "xyz_frames",
]

XYZ_SUFFIXES = (".xyz", ".extxyz")
# Glob characters that mark a string as a pattern ("[" is left out: SMILES use brackets).
_GLOB_CHARS = ("*", "?")


@dataclass(frozen=True)
class SourceFile:
    """One file of the collection: its path (as given or found), size (bytes) and mtime (ns)."""

    path: str
    size: int
    mtime_ns: int

    @property
    def is_xyz(self) -> bool:
        """Split into frames by atom-count lines (``XYZ_SUFFIXES``), not by ``ase.io.iread``."""
        return Path(self.path).suffix.lower() in XYZ_SUFFIXES


@dataclass(frozen=True)
class ChunkStart:
    """Where a chunk's first structure is: file index, frame within it, byte offset (XYZ only)."""

    file: int
    frame: int
    offset: int | None


@dataclass(frozen=True)
class Plan:
    """The structures of a collection, counted once.

    Attributes:
        files: the files in order.
        frames: structures per file (unreadable parts count as one each).
        chunk_size: structures per chunk (the last chunk may be shorter).
        starts: the start of every chunk, ``len(starts) == ceil(total / chunk_size)``.
    """

    files: tuple[SourceFile, ...]
    frames: tuple[int, ...]
    chunk_size: int
    starts: tuple[ChunkStart, ...]

    @property
    def total(self) -> int:
        """Structures in the collection."""
        return sum(self.frames)

    @property
    def chunks(self) -> int:
        """Number of chunks."""
        return len(self.starts)

    def chunk_range(self, chunk: int) -> range:
        """Global indices of the structures of ``chunk``."""
        start = chunk * self.chunk_size
        return range(start, min(start + self.chunk_size, self.total))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``from_json`` reads it back)."""
        return {
            "files": [asdict(f) for f in self.files],
            "frames": list(self.frames),
            "chunk_size": self.chunk_size,
            "starts": [[s.file, s.frame, s.offset] for s in self.starts],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        """The plan ``to_json`` wrote."""
        return cls(
            files=tuple(SourceFile(**f) for f in data["files"]),
            frames=tuple(int(n) for n in data["frames"]),
            chunk_size=int(data["chunk_size"]),
            starts=tuple(ChunkStart(int(f), int(k), None if o is None else int(o)) for f, k, o in data["starts"]),
        )


def is_collection_item(item: Any) -> bool:
    """True for what ``expand_inputs`` takes: a path object, an existing file or directory, or a
    string with ``*`` or ``?`` (a glob)."""
    if isinstance(item, os.PathLike):
        return True
    if not isinstance(item, str):
        return False
    if any(c in item for c in _GLOB_CHARS):
        return True
    try:
        return Path(item).exists()
    except (OSError, ValueError):
        return False


def _stat(path: Path) -> SourceFile:
    st = path.stat()
    return SourceFile(str(path), st.st_size, st.st_mtime_ns)


def _directory_files(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(root) / f for f in files if not f.startswith(".")]
    return sorted(found)


def _expand_one(item: str | os.PathLike) -> list[Path]:
    text = os.fspath(item)
    if isinstance(item, str) and any(c in text for c in _GLOB_CHARS) and not Path(text).exists():
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
        files = [p for p in matches if p.is_file()]
        if not files:
            raise FileNotFoundError(f"no files match the pattern {text!r}")
        return files
    path = Path(text)
    if path.is_dir():
        files = _directory_files(path)
        if not files:
            raise ValueError(f"directory {path} holds no files to screen")
        return files
    if not path.exists():
        raise FileNotFoundError(f"structure file not found: {path}")
    refuse_folder(path, "structure file")
    return [path]


def expand_inputs(items: Sequence[str | os.PathLike]) -> tuple[SourceFile, ...]:
    """The files of ``items`` (files, directories, globs) in order, with their sizes and mtimes.

    Raises:
        FileNotFoundError: a file that does not exist, a glob that matches no file.
        ValueError: no inputs; an empty directory; an item that is no path (e.g. a SMILES string).
    """
    if not items:
        raise ValueError("nothing to screen: give files, directories or globs")
    files: list[Path] = []
    for item in items:
        if not is_collection_item(item):
            raise ValueError(f"cannot screen {item!r}: give structure files, directories or globs (quote globs)")
        files += _expand_one(item)
    return tuple(_stat(p) for p in files)


# --------------------------------------------------------------------------- XYZ framing


def _atom_count(line: bytes) -> int | None:
    parts = line.split()
    return int(parts[0]) if len(parts) == 1 and parts[0].isdigit() else None


def xyz_frames(handle: BinaryIO, keep: bool = True) -> Iterator[tuple[int, bytes | str | None]]:
    """The frames of an (extended) XYZ file from the handle's position, without parsing them.

    Yields:
        (byte offset of the frame, its text) with ``keep``; (offset, None) without ``keep`` (just
        counting); (offset, reason) for a part that is no frame: lines that are no atom count
        (skipped up to the next atom-count line) or a frame cut short by the end of the file.
    """
    offset = handle.tell()
    line = handle.readline()
    while line:
        if not line.strip():
            offset += len(line)
            line = handle.readline()
            continue
        start, count = offset, _atom_count(line)
        if count is None:
            first = line.decode("utf-8", "replace").strip()[:60]
            while line and (not line.strip() or _atom_count(line) is None):
                offset += len(line)
                line = handle.readline()
            yield start, f"expected the number of atoms at byte {start}, found {first!r}"
            continue
        lines, missing = [line], count + 1
        offset += len(line)
        for _ in range(count + 1):
            line = handle.readline()
            if not line:
                break
            offset += len(line)
            missing -= 1
            if keep:
                lines.append(line)
        if missing:
            yield start, f"the frame at byte {start} ends after {count + 1 - missing} of its {count + 1} lines"
            return
        yield start, b"".join(lines) if keep else None
        line = handle.readline()


# --------------------------------------------------------------------------- the plan


def _ase_frame_count(path: str) -> int:
    """Frames ``ase.io.iread`` gives for ``path``, plus one for a failure (or an empty file)."""
    import ase.io

    count = 0
    try:
        for _ in ase.io.iread(path):
            count += 1
    except Exception:  # ASE raises many kinds for unreadable input: the rest of the file is one error
        return count + 1
    return max(count, 1)


def _xyz_offsets(path: str) -> Iterator[int]:
    """Byte offset of every frame of an XYZ file (an empty file: one entry, an error row)."""
    with open(path, "rb") as handle:
        empty = True
        for offset, _ in xyz_frames(handle, keep=False):
            empty = False
            yield offset
        if empty:
            yield 0


def make_plan(files: Sequence[SourceFile], chunk_size: int) -> Plan:
    """Count the structures of ``files`` (one pass) and find each chunk's start.

    Raises:
        ValueError: ``chunk_size`` < 1.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    frames: list[int] = []
    starts: list[ChunkStart] = []
    total = 0
    for index, source in enumerate(files):
        if source.is_xyz:
            count = 0
            for count, offset in enumerate(_xyz_offsets(source.path), start=1):
                if (total + count - 1) % chunk_size == 0:
                    starts.append(ChunkStart(index, count - 1, offset))
        else:
            count = _ase_frame_count(source.path)
            first = -total % chunk_size  # frames of this file that start a chunk: first, first + chunk_size, ...
            starts += [ChunkStart(index, k, None) for k in range(first, count, chunk_size)]
        frames.append(count)
        total += count
    return Plan(tuple(files), tuple(frames), chunk_size, tuple(starts))
