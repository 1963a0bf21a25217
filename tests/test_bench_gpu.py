"""scripts/bench_gpu.py without a GPU: it skips cleanly on CUDA, and its --dry-run (CPU, tiny sizes,
no compiles, nothing written) runs every part of the script: parity, MD, large systems, training."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import REPO

SCRIPT = str(REPO / "scripts" / "bench_gpu.py")


def run(*args: str) -> subprocess.CompletedProcess:
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the path without CUDA")
def test_skips_without_cuda() -> None:
    done = run("--no-write")
    assert done.returncode == 0 and "skipped (no CUDA device)" in done.stdout


@pytest.mark.slow  # imports, two MD systems and training steps of tiny models (~30-60 s)
def test_dry_run_covers_every_row_and_writes_nothing() -> None:
    done = run("--dry-run")
    assert done.returncode == 0, done.stderr[-2000:]
    for heading in (
        "| system | atoms | ΔE eV",
        "Sliced-edge operator",
        "Large systems (issue 21)",
        "Training (issue 21)",
    ):
        assert heading in done.stdout
    assert "--no-write: " in done.stdout and "left as it is" in done.stdout
