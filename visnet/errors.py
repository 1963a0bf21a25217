"""Which exceptions are the user's to fix, and their one-line message.

The ``visnet`` command (``visnet.cli.main``) is the one error boundary of every subcommand: a user
error (``is_user_error``) prints ``visnet: error: <message>`` and exits with code 2; anything else
is a bug and keeps its traceback.

User errors are ``VisnetError`` (the package's own), ``ValueError`` (bad input: the message names
the culprit), ``FileNotFoundError``, Lightning's ``MisconfigurationException``, and ``OSError`` from the environment of a path (no space left,
permission denied, a folder where a file is expected, a read-only file system, ...).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["ENVIRONMENT_ERRNOS", "LockHeldError", "VisnetError", "is_user_error", "user_message"]

# errno values of an OSError that describe the user's files or machine, not a bug.
ENVIRONMENT_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.ENOENT,
        errno.EEXIST,
        errno.ENOTEMPTY,
        errno.ENAMETOOLONG,
        errno.EMFILE,
        errno.ENFILE,
        errno.EIO,
        errno.EFBIG,
    }
)


class VisnetError(Exception):
    """An error in the user's input or environment that ``visnet`` reports as one line."""


class LockHeldError(VisnetError):
    """Another process holds the lock on a run's files (a ``visnet.files.lock.FileLock`` refused).

    Attributes:
        path: the lock file. holder: what it says about its holder ("pid N on HOST, started ...").
    """

    def __init__(self, path: str | os.PathLike, holder: str, message: str | None = None) -> None:
        self.path = Path(path)
        self.holder = holder
        super().__init__(message or f"{path} is held by another run ({holder}): wait for it to end")


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is the user's to fix (one line, exit code 2) rather than a bug (traceback)."""
    if isinstance(err, (VisnetError, ValueError, FileNotFoundError)):
        return True
    if isinstance(err, OSError):
        return err.errno in ENVIRONMENT_ERRNOS
    if type(err).__name__ == "MisconfigurationException":  # Lightning: an option the user gave
        return True
    return isinstance(err, ImportError) and "pip install" in str(err)  # a missing optional extra


def user_message(err: BaseException) -> str:
    """One line for a user error: the message, and for an ``OSError`` its reason and file."""
    if isinstance(err, OSError) and err.strerror and not isinstance(err, FileNotFoundError):
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror}{where}".replace("\n", " ")
    text = str(err) or type(err).__name__
    return text.replace("\n", " ") if len(text) < 2000 else text[:2000].replace("\n", " ") + " ..."
