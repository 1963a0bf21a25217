"""A lock held on a run's files for as long as the run lasts, so that a second run writing the same
files is refused at once instead of interleaving its writes with the first's.

``fcntl.flock`` on a lock file, taken without waiting: the kernel drops it when the holder exits,
however it ends (SIGKILL included), so a lock is never left held by a dead run. The file records
its holder (pid, host, start time) for the message of a refused run and is removed on release
(before unlocking: a run that opened the old file sees it replaced and tries again). A file left
behind by a killed run is taken over; ``FileLock.previous`` says whose it was. Where ``fcntl`` is
missing (Windows) nothing is locked.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None

__all__ = ["FileLock"]

UNKNOWN_HOLDER = "unknown run"


class FileLock:
    """An exclusive lock on the file ``path`` (created with its folders), held from ``acquire`` to
    ``release``; the caller turns a refusal into its own one-line error.

    Args:
        path: the lock file, e.g. ``<run folder>/<name>.lock``.

    Attributes:
        holder: after a refused ``acquire``, what the lock file says about the process holding it
            ("pid N on HOST, started ...").
        previous: after an ``acquire``, the holder recorded in a lock file left by a run that did
            not end cleanly, else None.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.holder = UNKNOWN_HOLDER
        self.previous: str | None = None
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting and record this process in the file; False (``holder``
        set) when another process holds it. Always True where ``fcntl`` is missing."""
        if fcntl is None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.holder = _read_holder(fd)
                os.close(fd)
                return False
            if _same_file(fd, self.path):
                self._fd = fd
            else:  # released and removed between our open and our lock: try the new file
                os.close(fd)
        previous = _read_holder(self._fd)
        self.previous = None if previous == UNKNOWN_HOLDER else previous
        stamp = f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, stamp.encode(), 0)
        return True

    def release(self) -> None:
        """Remove the lock file and release the lock (nothing when it is not held)."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def _read_holder(fd: int) -> str:
    """What the lock file says about its holder ("pid N on host, started ..."), else "unknown run"."""
    text = os.pread(fd, 256, 0).decode(errors="replace").strip()
    return text or UNKNOWN_HOLDER


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (opened.st_dev, opened.st_ino)
