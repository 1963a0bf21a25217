"""Atomic file writes: write to a temporary file in the target folder, fsync, rename over the
target. A crash at any moment leaves the previous file intact and no temporary file behind."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", suffix: str = ".tmp") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` for writing; on a clean exit it replaces ``path``.

    Args:
        path: the final file (parent folders are created).
        mode: "wb" or "w" (text, UTF-8).
        suffix: suffix of the temporary name (writers such as ``np.savez`` look at it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _default_mode())  # mkstemp creates 0600: give the file normal permissions
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        failure = write_failure(err, path)
        if failure is None:
            raise
        raise failure from err


def write_failure(err: BaseException, path: Path) -> OSError | None:
    """An ``OSError`` naming ``path`` for a failed write, None when ``err`` is no write failure.

    ``torch.save`` reports a full disk as ``RuntimeError: [enforce fail at inline_container.cc...]
    ... file write failed``; a plain write or fsync as an ``OSError`` without the file name.
    """
    if isinstance(err, OSError) and err.filename is None and err.errno is not None:
        return OSError(err.errno, f"{err.strerror or os.strerror(err.errno)} writing {path}")
    text = str(err)
    if isinstance(err, RuntimeError) and ("inline_container" in text or "file write failed" in text):
        detail = text.strip().splitlines()[0][:200]
        return OSError(errno.ENOSPC, f"No space left on device writing {path} (the write failed: {detail})")
    return None


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)
    return Path(path)
