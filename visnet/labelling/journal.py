"""The journal of a labelling run: one JSON line per finished frame (its labels or the reason it
failed), appended and flushed as each frame finishes, so a run that is killed loses at most the
frame being written and a rerun computes only what the journal lacks. Lines reach the disk
(fsync) at least once a second and when the journal closes: a kill of the process loses nothing
flushed; a crash of the machine loses at most the last second's frames, computed again on rerun.

The first line records what the run labels (a fingerprint of the input and the level of theory);
a rerun with other input or another calculator is refused instead of mixing the two.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from visnet.files.atomic import atomic_write_text

__all__ = ["FORMAT", "Journal", "journal_path"]

FORMAT = "visnet-label-journal/1"
# Seconds between fsyncs: one per frame cost ~9 ms on a shared disk, as much as half a 21-atom xTB frame.
FSYNC_INTERVAL_S = 1.0


def journal_path(output: Path) -> Path:
    """The journal next to ``output``: ``OUT.partial.jsonl``."""
    return output.with_name(output.name + ".partial.jsonl")


class Journal:
    """Append-only record of finished frames; ``records`` maps frame index -> its record
    (``{"index", "energy", "forces", "stress"?}`` in eV, eV/Å, eV/Å³, or ``{"index", "failure"}``)."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        """Open the journal at ``path`` for a run described by ``header`` (fingerprint,
        level_of_theory, frames), resuming one made for the same run.

        Raises:
            ValueError: the journal belongs to another input or level of theory, or is not a journal.
        """
        self.path = path
        self.header = {"format": FORMAT, **header}
        self.records: dict[int, dict[str, Any]] = {}
        if path.exists() and path.stat().st_size:
            self._resume()
        else:
            atomic_write_text(path, json.dumps(self.header) + "\n")
        self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._synced = time.monotonic()

    def _resume(self) -> None:
        with open(self.path, "rb") as handle:
            lines = handle.read().split(b"\n")
        try:
            old = json.loads(lines[0])
        except ValueError:
            raise ValueError(f"{self.path} is not a labelling journal; delete it to start over") from None
        self._check_header(old)
        good = len(lines[0]) + 1
        for line in lines[1:-1]:  # the last piece is empty, or a line cut short by a kill: computed again
            try:
                record = json.loads(line)
            except ValueError:
                break
            self.records.setdefault(int(record["index"]), record)
            good += len(line) + 1
        os.truncate(self.path, good)

    def _check_header(self, old: dict[str, Any]) -> None:
        if not isinstance(old, dict) or old.get("format") != FORMAT:
            raise ValueError(f"{self.path} is not a labelling journal; delete it to start over")
        if old.get("level_of_theory") != self.header["level_of_theory"]:
            raise ValueError(
                f"{self.path} holds labels of {old.get('level_of_theory')!r}, not {self.header['level_of_theory']!r}: "
                "rerun with the same method/calculator to resume, or delete it to start over"
            )
        if old.get("fingerprint") != self.header["fingerprint"]:
            raise ValueError(
                f"{self.path} was made from different input structures ({old.get('frames')} frames, fingerprint "
                f"{old.get('fingerprint')}; these: {self.header['frames']}, {self.header['fingerprint']}): "
                "rerun with the same input to resume, or delete it to start over"
            )

    def append(self, record: dict[str, Any]) -> None:
        """Write one finished frame's record (flushed: a kill of this process cannot lose it)."""
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()
        if time.monotonic() - self._synced >= FSYNC_INTERVAL_S:
            self._sync()
        self.records[int(record["index"])] = record

    def _sync(self) -> None:
        os.fsync(self._handle.fileno())
        self._synced = time.monotonic()

    def close(self) -> None:
        """Sync and close the file (the journal stays until the output is complete)."""
        if not self._handle.closed:
            self._sync()
            self._handle.close()

    def remove(self) -> None:
        """Close and delete the journal (after the output has been written)."""
        self.close()
        self.path.unlink(missing_ok=True)
