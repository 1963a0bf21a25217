"""Run one benchmark case in a fresh Python subprocess with a resident-memory cap.

Shared by ``benchmark.py`` and ``load_test.py``: the case runs as ``python <script> --case <json>``
and prints one JSON line; the parent polls the child's resident memory and kills it above the cap,
so an out-of-memory case is reported instead of taking the machine (or this process) down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def rss_gb(pid: int) -> float:
    """Resident memory of process ``pid`` in GB (0 when it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return 0.0


def run_case(script: str, case: dict, memory_cap_gb: float) -> dict:
    """The case's JSON result, or the case with an "error" saying why it has none."""
    env = dict(os.environ, OMP_NUM_THREADS=str(case["threads"]))
    command = [sys.executable, script, "--case", json.dumps(case)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, rss_gb(proc.pid))
        if peak > memory_cap_gb:
            proc.kill()
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    if peak > memory_cap_gb:
        return {**case, "error": f"out of memory (> {memory_cap_gb:g} GB)"}
    if proc.returncode == -signal.SIGKILL:
        return {**case, "error": f"killed (out of memory?) at {peak:.1f} GB resident memory"}
    return {**case, "error": (stderr.strip().splitlines() or ["failed"])[-1][:200]}
