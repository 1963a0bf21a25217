"""E+F timing of the bundled model (eager, 1 thread) for a given source tree: compare two checkouts.

    git worktree add /tmp/old <commit>
    python scripts/refactor_timing.py /tmp/old    # then: python scripts/refactor_timing.py .

Prints median milliseconds per energy+forces call for aspirin and a batch of 32 aspirins, float32
and float64 (1 torch thread). Alternate the two trees at least twice: the run-to-run spread on a
shared machine is ±15 %.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

ASPIRIN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rmd17" / "rmd17_aspirin_train1000.npz"


def median_ms(call, repeats: int, warmup: int) -> float:
    """Median wall time of ``call()`` in ms after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main(tree: str) -> None:
    sys.path.insert(0, tree)
    torch.set_num_threads(1)
    visnet = importlib.import_module("visnet")
    data = np.load(ASPIRIN)
    results = {}
    for dtype in ("float32", "float64"):
        model = visnet.load_model("default", dtype=dtype)
        z = torch.tensor(data["z"]).long()
        pos = torch.tensor(data["R"][0], dtype=getattr(torch, dtype))
        results[dtype] = median_ms(lambda m=model, z=z, p=pos: m(z, p), 40, 5)
        zz = z.repeat(32)
        pp = torch.cat([pos + 30.0 * k for k in range(32)])  # 30 Å apart: 32 separate molecules
        batch = torch.arange(32).repeat_interleave(len(z))
        results[f"{dtype} x32"] = median_ms(lambda m=model, z=zz, p=pp, b=batch: m(z, p, b), 5, 2)
    print(visnet.__file__, {k: round(v, 1) for k, v in results.items()}, "ms, 1 thread")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1]))
