"""Reading a collection chunk by chunk: the structures of one chunk of a ``Plan`` as
``PendingStructure`` objects, read from where the plan says the chunk starts. Only the chunk is
ever in memory; a frame that cannot be read becomes a structure with an error (the run goes on).

Each structure carries what ``visnet.predict`` gives a frame of a file: ``name`` the file stem,
``source`` "<path> frame <k>", ``frame`` k, ``input_index`` the file's position in the collection.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

from ase import Atoms

from visnet.prediction.collection import ChunkStart, Plan, SourceFile, xyz_frames
from visnet.prediction.inputs import PendingStructure

__all__ = ["read_chunk"]

# Characters of a reader's own message kept in the reason (some quote whole lines).
MESSAGE_CHARS = 200


def _bare(atoms: Atoms) -> Atoms:
    """Numbers, positions (Å), cell and pbc only: what a prediction needs, nothing stale."""
    return Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)


def _reason(err: Exception) -> str:
    return f"cannot read this frame ({type(err).__name__}: {str(err)[:MESSAGE_CHARS]})"


def _parse_xyz(text: bytes) -> Atoms | str:
    from ase.io.extxyz import read_extxyz

    try:
        return next(read_extxyz(io.StringIO(text.decode("utf-8")), index=0))
    except Exception as err:  # ASE raises many kinds for a bad frame: the frame becomes an error row
        return _reason(err)


def _xyz_items(source: SourceFile, offset: int) -> Iterator[Atoms | str]:
    with open(source.path, "rb") as handle:
        handle.seek(offset)
        empty = True
        for _, item in xyz_frames(handle):
            empty = False
            yield _parse_xyz(item) if isinstance(item, bytes) else item
        if empty and offset == 0:
            yield f"structure file {source.path} holds no structures"


def _ase_items(source: SourceFile, skip: int) -> Iterator[Atoms | str]:
    """Frames from ``skip`` on (the ones before are parsed and dropped); a failure ends the file."""
    import ase.io

    count = 0
    try:
        for atoms in ase.io.iread(source.path):
            if count >= skip:
                yield atoms
            count += 1
    except Exception as err:  # ASE raises many kinds for unreadable input: the rest of the file is one error
        yield f"cannot read structure file {source.path} from frame {count} on ({type(err).__name__}: " + (
            f"{str(err)[:MESSAGE_CHARS]})"
        )
        return
    if count == 0:
        yield f"structure file {source.path} holds no structures"


def _file_items(plan: Plan, start: ChunkStart) -> Iterator[tuple[int, int, Atoms | str]]:
    """(file index, frame, Atoms or reason) from ``start`` to the end of the collection."""
    file, frame, offset = start.file, start.frame, start.offset
    while file < len(plan.files):
        source = plan.files[file]
        items = _xyz_items(source, offset or 0) if source.is_xyz else _ase_items(source, frame)
        for k, item in enumerate(items, start=frame):
            yield file, k, item
        file, frame, offset = file + 1, 0, 0


def _structure(plan: Plan, file: int, frame: int, item: Atoms | str) -> PendingStructure:
    path = plan.files[file].path
    name, source = Path(path).stem, f"{path} frame {frame}"
    if isinstance(item, Atoms):
        return PendingStructure(file, _bare(item), name, source, frame=frame)
    pending = PendingStructure(file, None, name, source, frame=frame)
    pending.error = f"{pending.label}: {item}"
    return pending


def read_chunk(plan: Plan, chunk: int) -> list[PendingStructure]:
    """The structures of ``chunk`` (``plan.chunk_range(chunk)``), in order.

    Raises:
        ValueError: the files no longer hold what the plan counted (changed during the run).
    """
    wanted = len(plan.chunk_range(chunk))
    out: list[PendingStructure] = []
    for file, frame, item in _file_items(plan, plan.starts[chunk]):
        if len(out) == wanted:
            break
        out.append(_structure(plan, file, frame, item))
    if len(out) != wanted:
        first = plan.files[plan.starts[chunk].file].path
        raise ValueError(
            f"chunk {chunk} (from {first}): found {len(out)} of its {wanted} structures; "
            "the input files changed during the screen: delete its .shards folder to start over"
        )
    return out
