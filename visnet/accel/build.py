"""Building a fast-path package: in this process (``build_now``) or in a background one (``start_build``).

The background build is ``python -m visnet.accel.build JOB.json``, started at the lowest CPU
priority (nice 19) with one thread, in its own session (it finishes, and fills the cache for the
next run, even when the run that started it ends first). The job file names the model file (the
caller's private copy, saved for the build), the cache key and the cache folder. Exit status:
0 built (or already there), 3 another process is building the key, 1 failed (the reason is
recorded in the cache, ``FastPathCache.failure``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from visnet.accel.cache import BuildOutcome, CacheKey, FastPathCache
from visnet.accel.export import export_model
from visnet.io.model_files import load_model, save_model

__all__ = ["EXIT_BUSY", "EXIT_FAILED", "build_now", "export_file", "main", "start_build"]

EXIT_FAILED = 1
EXIT_BUSY = 3
JOB_MAX_AGE_SECONDS = 3600.0  # a job folder older than this belongs to a build that never started


def export_file(model_file: Path, package: Path, dtype: torch.dtype, device: torch.device) -> None:
    """The exporter of the cache: ``model_file`` loaded in ``dtype`` on ``device`` and exported
    (``visnet.accel.export.export_model``, which records the package as built here)."""
    model = load_model(model_file, device=device, dtype=dtype)
    export_model(model, package, dtype=dtype, device=device, verbose=False)


def _job_folder(cache: FastPathCache, key: CacheKey) -> Path:
    """A fresh folder for one build's job file and model copy (old abandoned ones removed)."""
    cache.staging.mkdir(parents=True, exist_ok=True)
    for old in cache.staging.glob("job.*"):
        try:
            if time.time() - old.stat().st_mtime > JOB_MAX_AGE_SECONDS:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix=f"job.{key.digest}.", dir=cache.staging))


def _write_job(cache: FastPathCache, key: CacheKey, model: nn.Module, label: str) -> Path:
    """Save ``model`` and the job description for a build; returns the job file."""
    folder = _job_folder(cache, key)
    model_file = save_model(model, folder / "model.pt")
    job = {"root": os.fspath(cache.root), "key": asdict(key), "model_file": os.fspath(model_file), "label": label}
    job_file = folder / "job.json"
    job_file.write_text(json.dumps(job))
    return job_file


def build_now(cache: FastPathCache, key: CacheKey, model: nn.Module, label: str = "") -> BuildOutcome:
    """Build ``key``'s package of ``model`` in this process (``visnet cache build``,
    ``accel="export"``); never raises for the build's faults (see ``FastPathCache.build``)."""
    problem = cache.writable()
    if problem:
        return BuildOutcome("failed", problem)
    try:
        job_file = _write_job(cache, key, model, label)
    except Exception as err:  # an unwritable or full cache folder, a model save_model refuses
        return BuildOutcome("failed", f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    try:
        return _run_job(job_file)
    finally:
        shutil.rmtree(job_file.parent, ignore_errors=True)


def start_build(cache: FastPathCache, key: CacheKey, model: nn.Module, label: str = "") -> subprocess.Popen:
    """Start ``python -m visnet.accel.build`` for ``key`` in the background (nice 19, one thread,
    its own session, output discarded); returns the process (``poll()``: None while it runs).

    Raises:
        OSError / ValueError: the job could not be written (an unwritable cache, a full disk).
    """
    job_file = _write_job(cache, key, model, label)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TORCHINDUCTOR_COMPILE_THREADS="1")
    env["VISNET_CACHE_DIR"] = os.fspath(cache.root)
    # nice before torch is imported, so the whole build (imports, tracing, the C++ compiler it
    # starts) yields the CPU to the run it serves
    code = "import os, runpy; os.nice(19); runpy.run_module('visnet.accel.build', run_name='__main__')"
    return subprocess.Popen(
        [sys.executable, "-c", code, os.fspath(job_file)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _run_job(job_file: Path) -> BuildOutcome:
    job = json.loads(job_file.read_text())
    cache = FastPathCache(job["root"])
    key = CacheKey(**job["key"])
    return cache.build(key, Path(job["model_file"]), export_file, label=job.get("label", ""))


def main(argv: list[str] | None = None) -> int:
    """``python -m visnet.accel.build JOB.json``: run one build job; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m visnet.accel.build JOB.json", file=sys.stderr)
        return 2
    job_file = Path(args[0])
    torch.set_num_threads(1)
    try:
        outcome = _run_job(job_file)
    finally:
        shutil.rmtree(job_file.parent, ignore_errors=True)
    print(f"visnet: fast-path build: {outcome.status} {outcome.reason}".rstrip(), file=sys.stderr)
    return {"built": 0, "exists": 0, "busy": EXIT_BUSY}.get(outcome.status, EXIT_FAILED)


if __name__ == "__main__":
    sys.exit(main())
