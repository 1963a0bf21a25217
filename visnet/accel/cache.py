"""The fast-path cache: exported packages (``.pt2``) of models, keyed by everything that makes one valid.

A package runs only with the weights, dtype, device, torch version and machine it was built for,
so its key (``CacheKey``) is the SHA-256 of all of them: the model's content hash (its tensors,
hyperparameters and metadata; a model object has one too), dtype, device (and CUDA capability),
torch version, package version and the CPU architecture and instruction-set flags AOTInductor
compiles for. Another torch, edited weights or another machine give another key: a package that
no longer fits is never looked up.

Layout under ``$VISNET_CACHE_DIR`` (default ``~/.cache/visnet``)::

    packages/<key>/package.pt2      the package (recorded as trusted by export_model)
    packages/<key>/manifest.json    the key's fields, the package's SHA-256 and size, build time
    packages/.locks/<key>.lock      flock'ed by the process building <key> ({"pid", "host", "started"})
    packages/.tmp/<key>.<pid>.*     a build's staging folder (renamed into place when complete)
    packages/.failed/<key>.json     why the last build of a key failed (not retried for a day)

A build stages everything in a temporary folder, fsyncs it and renames it into place, so a reader
sees a complete entry or none; a lookup checks the package's SHA-256 against the manifest, so a
damaged entry is removed (and rebuilt) rather than loaded. One process builds a key at a time: it
holds an ``flock`` on the key's lock file, which the kernel releases when the process ends, so a
killed build never leaves a stale lock; its staging folder (named by its process id) is removed by
the next build. The cache's size is bounded (``$VISNET_CACHE_MAX_GB``,
default 2): after a build the least recently used entries go first.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import platform
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visnet.files.atomic import atomic_write_text
from visnet.io.model_files import model_metadata, package_version

__all__ = [
    "CACHE_DIR_ENV",
    "MAX_GB_ENV",
    "BuildOutcome",
    "CacheEntry",
    "CacheKey",
    "FastPathCache",
    "cache_key",
    "cache_root",
    "content_hash",
    "machine_fingerprint",
]

CACHE_DIR_ENV = "VISNET_CACHE_DIR"
MAX_GB_ENV = "VISNET_CACHE_MAX_GB"
DEFAULT_MAX_GB = 2.0
PACKAGE_NAME = "package.pt2"
MANIFEST_NAME = "manifest.json"
FAILURE_RETRY_SECONDS = 24 * 3600  # a failed build (no compiler, an unsupported op) is not retried sooner
# CPU flags that change the code AOTInductor emits (vector ISA): a package built with AVX-512 may
# not run on a CPU without it.
ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_fp16", "amx_tile")
ISA_FLAGS += ("asimd", "sve", "sve2")  # aarch64

# The function that writes a package: (model file, package path, dtype, device) -> None.
Exporter = Callable[[Path, Path, torch.dtype, torch.device], None]


def cache_root() -> Path:
    """``$VISNET_CACHE_DIR`` (default ``~/.cache/visnet``): the trusted-package registry, inductor's
    cache and the fast-path packages live under it."""
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "visnet")


def max_cache_bytes() -> int:
    """The packages' size bound in bytes (``$VISNET_CACHE_MAX_GB``, default 2; a bad value: the default)."""
    try:
        gigabytes = float(os.environ.get(MAX_GB_ENV, DEFAULT_MAX_GB))
    except ValueError:
        gigabytes = DEFAULT_MAX_GB
    return int(max(gigabytes, 0.0) * 1024**3)


# --------------------------------------------------------------------------- the key


def content_hash(model: nn.Module) -> str:
    """SHA-256 of what a model computes: every tensor of its state dict (name, dtype, shape,
    bytes), its hyperparameters, elements and units. Equal for a model object and the file it was
    saved to; any edited weight changes it."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    # what a package takes from the metadata (the rest, e.g. the version that saved it, is bookkeeping)
    described = {"hparams": model.hparams, "elements": sorted(model.elements), "units": model_metadata(model)["units"]}
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    return digest.hexdigest()


@functools.cache
def _cpu_flags() -> tuple[str, ...]:
    """The ``ISA_FLAGS`` this CPU has (from /proc/cpuinfo; empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ()
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.partition(":")[2].split())
    return tuple(f for f in ISA_FLAGS if f in flags)


def machine_fingerprint(device: torch.device) -> dict[str, Any]:
    """What the compiled code depends on besides the model: CPU architecture and ISA flags, and on
    CUDA the device's compute capability and CUDA version."""
    machine: dict[str, Any] = {"machine": platform.machine(), "cpu_flags": list(_cpu_flags())}
    if device.type == "cuda":
        machine["cuda_capability"] = list(torch.cuda.get_device_capability(device))
        machine["cuda_version"] = torch.version.cuda
    return machine


@dataclass(frozen=True)
class CacheKey:
    """Everything that makes a package valid; ``digest`` names its cache entry.

    Attributes:
        content: ``content_hash`` of the model. dtype: "float32"/"float64". device: "cpu"/"cuda".
        torch: torch version. visnet: package version. machine: ``machine_fingerprint``.
    """

    content: str
    dtype: str
    device: str
    torch: str
    visnet: str
    machine: dict[str, Any]

    @property
    def digest(self) -> str:
        """The entry's name: 32 hex digits of the SHA-256 of all fields."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:32]

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


def cache_key(model: nn.Module, dtype: torch.dtype | None = None, device: torch.device | None = None) -> CacheKey:
    """The key of ``model``'s package in ``dtype`` on ``device`` (default: the model's)."""
    device = torch.device(device) if device is not None else model.device
    return CacheKey(
        content=content_hash(model),
        dtype=str(dtype or model.dtype).removeprefix("torch."),
        device=device.type,
        torch=torch.__version__,
        visnet=package_version(),
        machine=machine_fingerprint(device),
    )


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class CacheEntry:
    """A complete cache entry (``visnet cache list``).

    Attributes:
        digest: the key's digest (folder name). path: the package. bytes: its size.
        label: the model it was built from (for people). dtype / device / torch: from its key.
        created: when it was built; last_used: when it was last looked up (seconds since the epoch).
    """

    digest: str
    path: Path
    bytes: int
    label: str
    dtype: str
    device: str
    torch: str
    created: float
    last_used: float


@dataclass(frozen=True)
class BuildOutcome:
    """What ``FastPathCache.build`` did: "built", "exists" (already there), "busy" (another
    process holds the key's lock) or "failed" (``reason``: one line)."""

    status: str
    reason: str = ""


class FastPathCache:
    """The packages under ``root / "packages"`` (``root``: default ``cache_root()``).

    Every method tolerates an unwritable or vanished folder: lookups miss, builds fail with a
    reason, listing shows nothing; none raises for the cache's own state.
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root()
        self.folder = self.root / "packages"

    # ------------------------------------------------------------------ paths
    def entry_dir(self, key: CacheKey | str) -> Path:
        return self.folder / _digest(key)

    def package_path(self, key: CacheKey | str) -> Path:
        return self.entry_dir(key) / PACKAGE_NAME

    def lock_path(self, key: CacheKey | str) -> Path:
        return self.folder / ".locks" / f"{_digest(key)}.lock"

    def failure_path(self, key: CacheKey | str) -> Path:
        return self.folder / ".failed" / f"{_digest(key)}.json"

    @property
    def staging(self) -> Path:
        return self.folder / ".tmp"

    # ------------------------------------------------------------------ reading
    def lookup(self, key: CacheKey) -> Path | None:
        """The package of ``key`` if its entry is complete and intact (SHA-256 and key as the
        manifest records), else None; a damaged or mismatched entry is removed (``discard``).
        Marks the entry used (for eviction)."""
        folder = self.entry_dir(key)
        manifest = _read_json(folder / MANIFEST_NAME)
        if manifest is None:
            if folder.exists():
                self.discard(key)  # a folder without a readable manifest: not from a complete build
            return None
        package = folder / PACKAGE_NAME
        try:
            intact = manifest.get("key") == asdict(key) and _sha256(package) == manifest.get("sha256")
        except OSError:
            intact = False
        if not intact:
            self.discard(key)
            return None
        with contextlib.suppress(OSError):
            os.utime(folder / MANIFEST_NAME)  # last use: the manifest's mtime
        return package

    def is_damaged(self, key: CacheKey) -> bool:
        """Whether ``key`` has an entry folder that ``lookup`` would refuse (checked without removing it)."""
        folder = self.entry_dir(key)
        if not folder.exists():
            return False
        manifest = _read_json(folder / MANIFEST_NAME)
        try:
            return manifest is None or manifest.get("sha256") != _sha256(folder / PACKAGE_NAME)
        except OSError:
            return True

    def entries(self) -> list[CacheEntry]:
        """The complete entries, most recently used first (unreadable ones skipped)."""
        found = []
        for folder in _subfolders(self.folder):
            manifest = _read_json(folder / MANIFEST_NAME)
            if manifest is None or not isinstance(manifest.get("key"), dict):
                continue
            key = manifest["key"]
            with contextlib.suppress(OSError):
                found.append(
                    CacheEntry(
                        digest=folder.name,
                        path=folder / PACKAGE_NAME,
                        bytes=(folder / PACKAGE_NAME).stat().st_size,
                        label=str(manifest.get("label", "")),
                        dtype=str(key.get("dtype")),
                        device=str(key.get("device")),
                        torch=str(key.get("torch")),
                        created=float(manifest.get("created", 0.0)),
                        last_used=(folder / MANIFEST_NAME).stat().st_mtime,
                    )
                )
        return sorted(found, key=lambda e: e.last_used, reverse=True)

    def failure(self, key: CacheKey) -> str | None:
        """Why the last build of ``key`` failed, if it failed less than ``FAILURE_RETRY_SECONDS`` ago."""
        record = _read_json(self.failure_path(key))
        if record is None or time.time() - float(record.get("time", 0.0)) > FAILURE_RETRY_SECONDS:
            return None
        return str(record.get("reason", "the build failed"))

    def building(self, key: CacheKey) -> bool:
        """Whether a live process holds ``key``'s build lock."""
        try:
            with open(self.lock_path(key), "rb") as handle:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False

    # ------------------------------------------------------------------ writing
    def writable(self) -> str | None:
        """None when builds can write here, else why not (one line)."""
        try:
            for folder in (self.staging, self.lock_path("x").parent):
                folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.staging):
                pass
        except OSError as err:
            return f"the cache folder {self.folder} is not writable ({err.strerror or err})"
        return None

    def build(self, key: CacheKey, model_file: Path, export: Exporter, label: str = "") -> BuildOutcome:
        """Build ``key``'s entry from ``model_file`` with ``export`` unless it exists or another
        process is building it. Never raises for the build's own faults (an export error, a full
        disk, an unwritable folder): they give ``BuildOutcome("failed", reason)`` and leave no
        partial entry or lock behind."""
        problem = self.writable()
        if problem:
            return BuildOutcome("failed", problem)
        try:
            with self._lock(key) as held:
                if not held:
                    return BuildOutcome("busy")
                if self.lookup(key) is not None:
                    return BuildOutcome("exists")
                self._clean_staging()
                start = time.perf_counter()
                self._stage_and_install(key, model_file, export, label, start)
        except Exception as err:  # any fault of the build: the caller runs eagerly
            reason = _one_line(err)
            self.record_failure(key, reason)
            return BuildOutcome("failed", reason)
        with contextlib.suppress(OSError):
            self.failure_path(key).unlink(missing_ok=True)
        self.evict(keep=key)
        return BuildOutcome("built")

    def _stage_and_install(self, key: CacheKey, model_file: Path, export: Exporter, label: str, start: float) -> None:
        """Export into a staging folder, write the manifest, fsync, rename it to the entry."""
        stage = Path(tempfile.mkdtemp(prefix=f"{key.digest}.{os.getpid()}.", dir=self.staging))
        try:
            package = stage / PACKAGE_NAME
            export(model_file, package, key.torch_dtype, torch.device(key.device))
            manifest = {
                "key": asdict(key),
                "sha256": _sha256(package),
                "bytes": package.stat().st_size,
                "label": label,
                "created": time.time(),
                "build_seconds": round(time.perf_counter() - start, 1),
            }
            atomic_write_text(stage / MANIFEST_NAME, json.dumps(manifest, indent=1))
            _fsync(package)
            _fsync(stage)
            target = self.entry_dir(key)
            if target.exists():  # a damaged leftover (lookup missed): out of the way first
                self.discard(key)
            os.rename(stage, target)
            _fsync(self.folder)
        finally:
            shutil.rmtree(stage, ignore_errors=True)  # gone after the rename; a failed build's leftovers

    def discard(self, key: CacheKey | str) -> None:
        """Remove ``key``'s entry: renamed away first (atomic), so no reader sees half of it."""
        folder = self.entry_dir(key)
        with contextlib.suppress(OSError):
            self.staging.mkdir(parents=True, exist_ok=True)
            trash = Path(tempfile.mkdtemp(prefix=f"{folder.name}.trash.", dir=self.staging))
            os.rename(folder, trash / "entry")
            shutil.rmtree(trash, ignore_errors=True)
        if folder.exists():  # the staging folder could not be made: remove in place
            shutil.rmtree(folder, ignore_errors=True)

    def evict(self, max_bytes: int | None = None, keep: CacheKey | None = None) -> list[str]:
        """Remove the least recently used entries until the packages take at most ``max_bytes``
        (default ``max_cache_bytes()``); never ``keep``. Returns the digests removed."""
        limit = max_cache_bytes() if max_bytes is None else max_bytes
        entries = self.entries()
        total = sum(e.bytes for e in entries)
        removed = []
        for entry in reversed(entries):  # least recently used first
            if total <= limit:
                break
            if keep is not None and entry.digest == keep.digest:
                continue
            self.discard(entry.digest)
            total -= entry.bytes
            removed.append(entry.digest)
        return removed

    def clear(self) -> int:
        """Remove every entry, failure record and staging folder (not live builds' locks); returns
        the number of entries removed."""
        count = 0
        for folder in _subfolders(self.folder):
            self.discard(folder.name)
            count += 1
        for extra in (self.folder / ".failed", self.staging):
            shutil.rmtree(extra, ignore_errors=True)
        return count

    def record_failure(self, key: CacheKey, reason: str) -> None:
        """Remember why ``key`` could not be built or used (``failure`` reports it for a day)."""
        with contextlib.suppress(OSError):  # a full disk may refuse even this: the reason is returned anyway
            atomic_write_text(self.failure_path(key), json.dumps({"reason": reason, "time": time.time()}))

    def _clean_staging(self) -> None:
        """Remove staging folders of builds whose process is gone (killed mid-build)."""
        for folder in _subfolders(self.staging, hidden=True):
            if folder.name.startswith("job."):
                continue  # a build's job (model file): removed by its build, or when an hour old
            parts = folder.name.split(".")
            pid = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None
            if pid is None or not _alive(pid):
                shutil.rmtree(folder, ignore_errors=True)

    @contextlib.contextmanager
    def _lock(self, key: CacheKey) -> Iterator[bool]:
        """Hold ``key``'s build lock (yields True) or learn that another build holds it (False).

        An ``flock`` on the lock file: the kernel releases it when its holder exits, so a killed
        build leaves no lock behind that anyone must judge stale."""
        lock = self.lock_path(key)
        handle = open(lock, "a+")  # noqa: SIM115 (held for the whole build)
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            handle.truncate(0)
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}))
            handle.flush()
            yield True
        finally:
            handle.close()  # releases the flock


# --------------------------------------------------------------------------- helpers


def _digest(key: CacheKey | str) -> str:
    return key if isinstance(key, str) else key.digest


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _fsync(path: Path) -> None:
    """fsync a file or folder (a folder: its entries, so a rename survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None (missing, unreadable, malformed, not an object)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _subfolders(folder: Path, hidden: bool = False) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir() and (hidden or not p.name.startswith("."))]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True
