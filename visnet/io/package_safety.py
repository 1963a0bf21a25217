"""What is checked before anything in an exported package (``.pt2``) is loaded.

Threat model: a package holds a compiled shared library (``*.wrapper.so``) that the loader opens
with ``dlopen``, so its code runs as soon as the package is loaded, exactly like unpickling a
``torch.load(weights_only=False)`` file. Nothing inside a package can prove who built it (its
metadata and torch version are plain text anyone can write), so:

* packages written on this machine by ``visnet export`` / ``export_model`` are recorded by the
  SHA-256 of the whole file in a registry under ``$VISNET_CACHE_DIR/trusted-packages`` (default
  ``~/.cache/visnet/trusted-packages``; one file per digest) and load without asking;
* any other file, including a recorded package edited afterwards (metadata, library), is refused
  before anything in it is read beyond its bounded metadata, unless the caller trusts it explicitly
  (``trust_package=True`` / ``--trust-package``);
* a trusted package is still checked before ``dlopen``: bounded sizes, and every shared library a
  complete ELF shared object of this machine's architecture exporting AOTInductor's entry points
  (a truncated or foreign library would crash the process or run code before failing).

The file is copied to a private folder while it is hashed, and the copy is what gets loaded, so
the checked bytes are the loaded bytes. Anyone who can write the registry folder can already run
code as the user; it guards against files from elsewhere, not against the user's own account.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import stat
import struct
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from visnet.errors import VisnetError
from visnet.files.atomic import atomic_write_text

__all__ = [
    "MAX_METADATA_BYTES",
    "MAX_PACKAGE_BYTES",
    "PackageError",
    "is_recorded",
    "UntrustedPackageError",
    "check_archive",
    "private_copy",
    "read_member",
    "record_package",
    "registry_dir",
    "require_trusted",
]

MAX_PACKAGE_BYTES = 2 * 1024**3  # the file and its uncompressed contents, as for model files
MAX_METADATA_BYTES = 16 * 1024**2  # the metadata JSON (a model's metadata arrays are bounded below this)
# dlsym'd by torch's AOTInductor runner: a library without them is no AOTInductor model.
REQUIRED_SYMBOLS = frozenset(
    {
        "AOTInductorModelContainerCreateWithDevice",
        "AOTInductorModelContainerDelete",
        "AOTInductorModelContainerRun",
        "AOTInductorModelContainerGetNumOutputs",
    }
)
_ELF_MACHINES = {"x86_64": 62, "amd64": 62, "aarch64": 183, "arm64": 183, "ppc64le": 21, "s390x": 22}
_CHUNK = 1024**2


class PackageError(VisnetError, ValueError):
    """A package refused before loading: too large, malformed, or holding an invalid library."""


class UntrustedPackageError(PackageError):
    """A package this machine did not build (or that changed since), loaded without explicit trust."""


def registry_dir() -> Path:
    """``$VISNET_CACHE_DIR/trusted-packages`` (default ``~/.cache/visnet/trusted-packages``)."""
    root = os.environ.get("VISNET_CACHE_DIR") or Path.home() / ".cache" / "visnet"
    return Path(root) / "trusted-packages"


def _hexdigest(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def record_package(path: str | os.PathLike, name: str | os.PathLike | None = None) -> str:
    """Record the SHA-256 of the package ``path`` (just built here) as trusted; returns the digest.
    ``name``: the path it will have (recorded for reference; default ``path``)."""
    digest = _hexdigest(Path(path))
    where = os.fspath(Path(name if name is not None else path).absolute())
    entry = {"path": where, "recorded": time.strftime("%Y-%m-%dT%H:%M:%S")}
    registry = registry_dir()
    registry.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not _private(registry):
        raise PackageError(f"{registry} is not a private folder of this user: no trust is recorded there")
    atomic_write_text(registry / digest, json.dumps(entry))
    return digest


def _private(path: Path) -> bool:
    """``path`` belongs to this user and nobody else may write it (a cache folder shared with a group
    would let its members vouch for packages this user then loads)."""
    try:
        info = path.stat()
    except OSError:
        return False
    return info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def is_recorded(digest: str) -> bool:
    """Whether ``digest`` is recorded as built here, in a registry only this user can write."""
    registry = registry_dir()
    entry = registry / digest
    return entry.is_file() and _private(registry) and _private(entry)


def require_trusted(label: str, digest: str, trust_package: bool) -> None:
    """UntrustedPackageError unless ``digest`` is recorded or the caller trusts the package."""
    if trust_package or is_recorded(digest):
        return
    raise UntrustedPackageError(
        f"{label} is an exported package that was not built on this machine, or was changed after it was "
        f"built (its SHA-256 {digest[:16]}… is not recorded in {registry_dir()}, a folder only this user may write): a package holds compiled "
        "native code that runs as soon as it is loaded, like torch.load(weights_only=False). Load it only if "
        "you trust where it came from, with trust_package=True (--trust-package on the command line); "
        "otherwise export the model file here (visnet export model.pt model.pt2)"
    )


@contextlib.contextmanager
def private_copy(path: Path) -> Iterator[tuple[Path, str]]:
    """(a private copy of ``path``, the copy's SHA-256): hashed while copied, so the bytes checked
    and loaded are the same even if ``path`` changes meanwhile. Removed on exit."""
    size = path.stat().st_size
    if size > MAX_PACKAGE_BYTES:
        raise PackageError(f"{path}: {size} bytes, more than an exported package may be ({MAX_PACKAGE_BYTES})")
    folder = tempfile.mkdtemp(prefix="visnet-pt2-")  # mode 0700: no other user can swap the copy
    try:
        copy = Path(folder) / "package.pt2"
        digest = hashlib.sha256()
        with open(path, "rb") as source, open(copy, "wb") as target:
            while chunk := source.read(_CHUNK):
                if source.tell() > MAX_PACKAGE_BYTES:
                    raise PackageError(f"{path}: grew past {MAX_PACKAGE_BYTES} bytes while being read")
                digest.update(chunk)
                target.write(chunk)
        yield copy, digest.hexdigest()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, label: str) -> bytes:
    """The contents of ``info`` (at most ``limit`` bytes, whatever its header declares).

    Raises:
        PackageError: naming ``label`` and the member, for a member over ``limit`` or a corrupted one.
    """
    if info.file_size > limit:
        raise PackageError(f"{label}: {info.filename} takes {info.file_size} bytes, more than allowed ({limit})")
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as err:
        raise PackageError(f"{label}: {info.filename} is corrupted ({err}); export the model again") from None
    if len(data) > limit:
        raise PackageError(f"{label}: {info.filename} holds more than {limit} bytes (its header says less)")
    return data


def check_archive(archive: zipfile.ZipFile, label: str) -> None:
    """Bounded total size, and every ``.so`` a complete ELF library of this machine exporting
    AOTInductor's entry points (``check_shared_object``); PackageError naming the member otherwise."""
    infos = archive.infolist()
    total = sum(info.file_size for info in infos)
    if total > MAX_PACKAGE_BYTES:
        raise PackageError(f"{label}: its contents take {total} bytes, more than allowed ({MAX_PACKAGE_BYTES})")
    libraries = [info for info in infos if info.filename.endswith(".so")]
    if not libraries:
        raise PackageError(f"{label}: no compiled library (.so) inside: not a complete exported package")
    for info in libraries:
        with tempfile.TemporaryFile() as scratch:
            _bounded_copy(archive, info, scratch, label)
            check_shared_object(scratch, info.file_size, f"{label}: {info.filename}")


def _bounded_copy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: IO[bytes], label: str) -> None:
    try:
        with archive.open(info) as member:
            while chunk := member.read(_CHUNK):
                if target.tell() + len(chunk) > info.file_size:
                    raise PackageError(f"{label}: {info.filename} holds more bytes than its header says")
                target.write(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as err:
        raise PackageError(f"{label}: {info.filename} is corrupted ({err}); export the model again") from None


# --------------------------------------------------------------------------- ELF


def check_shared_object(handle: IO[bytes], size: int, label: str) -> None:
    """PackageError unless ``handle`` (``size`` bytes) is a complete 64-bit ELF shared object of
    this machine's byte order and architecture whose headers, segments and sections lie inside the
    file, and whose dynamic symbol table defines ``REQUIRED_SYMBOLS``."""
    order = "<" if sys.byteorder == "little" else ">"
    handle.seek(0)
    if handle.read(4) != b"\x7fELF":
        raise PackageError(f"{label} is not a shared library (no ELF header)")
    header = _read(handle, 0, 64, size, label)
    if header[4] != 2 or header[5] != (1 if order == "<" else 2):
        raise PackageError(f"{label} is not a 64-bit {sys.byteorder}-endian library for this machine")
    fields = struct.unpack(order + "HHIQQQIHHHHHH", header[16:64])
    e_type, machine, phoff, shoff = fields[0], fields[1], fields[4], fields[5]
    phentsize, phnum, shentsize, shnum = fields[8], fields[9], fields[10], fields[11]
    wanted = _ELF_MACHINES.get(platform.machine().lower())
    if e_type != 3 or (wanted is not None and machine != wanted):
        raise PackageError(f"{label} is not a shared library for this machine ({platform.machine()})")
    if phentsize != 56 or shentsize != 64 or shnum == 0:
        raise PackageError(f"{label} has malformed ELF headers")
    segments = [struct.unpack(order + "IIQQQQQQ", _read(handle, phoff + k * 56, 56, size, label)) for k in range(phnum)]
    sections = [
        struct.unpack(order + "IIQQQQIIQQ", _read(handle, shoff + k * 64, 64, size, label)) for k in range(shnum)
    ]
    for segment in segments:
        _inside(segment[2], segment[5], size, label)
    for section in sections:
        if section[1] != 8:  # SHT_NOBITS (.bss) occupies no bytes of the file
            _inside(section[4], section[5], size, label)
    missing = REQUIRED_SYMBOLS - _dynamic_symbols(handle, sections, size, order, label)
    if missing:
        raise PackageError(f"{label} is not an AOTInductor model library (it lacks {sorted(missing)[0]})")


def _dynamic_symbols(handle: IO[bytes], sections: list[tuple], size: int, order: str, label: str) -> set[str]:
    """Names of the symbols the library defines in its dynamic symbol table (SHT_DYNSYM)."""
    names: set[str] = set()
    for section in sections:
        if section[1] != 11 or section[9] != 24 or section[6] >= len(sections):
            continue
        strtab = sections[section[6]]
        strings = _read(handle, strtab[4], strtab[5], size, label)
        table = _read(handle, section[4], section[5], size, label)
        for offset in range(0, len(table) - 23, 24):
            name, _, _, shndx, _, _ = struct.unpack_from(order + "IBBHQQ", table, offset)
            if shndx != 0 and name < len(strings):
                end = strings.find(b"\0", name)
                names.add(strings[name : end if end >= 0 else len(strings)].decode("ascii", "replace"))
    return names


def _inside(offset: int, length: int, size: int, label: str) -> None:
    if offset + length > size:
        raise PackageError(f"{label} is truncated or corrupted (ELF data past its end): export the model again")


def _read(handle: IO[bytes], offset: int, length: int, size: int, label: str) -> bytes:
    _inside(offset, length, size, label)
    handle.seek(offset)
    return handle.read(length)
