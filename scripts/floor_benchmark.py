"""Energy + forces time against the matmul floor (issue 11), eager and compiled, in one process.

The floor of a call is the time of the model's own linear layers at that call's shapes, forward
plus the input-gradient backward that forces need, measured here in the same process: every
``F.linear`` of one eager call is recorded (fused ones included) and replayed alone. Usage::

    OMP_NUM_THREADS=1 python scripts/floor_benchmark.py [--cases bundled-aspirin ...] [--compile]
        [--dtype float32] [--repeats 20] [--no-eager] [--memory-cap 16]

Prints one markdown row per case: time (ms), floor (ms), ratio, threads and load average; times
are the best of ``--repeats`` calls after one warm-up (cases with over 500 atoms use at most 3).
Water cases are periodic boxes at liquid density (``scripts/load_test.py``'s ``water_box``). The
process exits with a message when its resident memory passes ``--memory-cap`` GB.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import CONFIGS, aspirin_structure  # noqa: E402
from load_test import water_box  # noqa: E402

import visnet  # noqa: E402

BUNDLED = "bundled"
WATER = "water"
CASES = {  # name -> (config, molecule copies, or atoms of a periodic water box)
    "bundled-aspirin": (BUNDLED, 1, None),
    "default-32-aspirins": ("default", 32, None),
    "md17-aspirin": ("md17", 1, None),
    "default-water-1029": ("default", None, 1029),
    "default-water-9999": ("default", None, 9999),
}
LARGE = 500  # atoms above which at most 3 timed calls are made


class LinearRecorder(TorchFunctionMode):
    """Records (input shape, weight, bias) of every ``F.linear`` call made under it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Size, Tensor, Tensor | None]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func is torch.nn.functional.linear:
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            self.calls.append((args[0].shape, args[1].detach(), None if bias is None else bias.detach()))
        return func(*args, **kwargs)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Minimum wall time of ``fn`` over ``repeats`` runs after one warm-up (s)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def floor_time(calls: list[tuple[torch.Size, Tensor, Tensor | None]], repeats: int) -> float:
    """Seconds of the recorded linears, each forward + backward to its input (s)."""
    inputs = [torch.randn(shape, dtype=w.dtype).requires_grad_(True) for shape, w, _ in calls]

    def run() -> None:  # one backward call for all of them, as in the model
        outputs = [torch.nn.functional.linear(x, w, b) for x, (_, w, b) in zip(inputs, calls, strict=True)]
        torch.autograd.grad(outputs, inputs, [torch.ones_like(y) for y in outputs])

    return best_time(run, repeats)


def rss_gb() -> float:
    """Resident memory of this process (GB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024**2
    return 0.0


def peak_gb() -> float:
    """Peak resident memory of this process so far (VmHWM, GB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def watch_memory(cap_gb: float) -> None:
    """Exit the process (status 3, a message on stderr) once its resident memory passes ``cap_gb``."""

    def poll() -> None:
        while True:
            if rss_gb() > cap_gb:
                print(f"floor_benchmark: resident memory above {cap_gb:g} GB, stopping", file=sys.stderr, flush=True)
                os._exit(3)
            time.sleep(0.05)

    threading.Thread(target=poll, daemon=True).start()


def build(config: str, dtype: torch.dtype) -> visnet.ViSNet:
    """The bundled model, or a seeded random model of a ``benchmark.CONFIGS`` configuration."""
    if config == BUNDLED:
        return visnet.load_model("default", dtype=dtype).eval()
    torch.manual_seed(0)
    return visnet.ViSNet(**CONFIGS[config]).to(dtype).eval()


def structure(copies: int, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """(z, pos, batch) of ``copies`` aspirins 20 Å apart."""
    atoms = aspirin_structure()
    z = torch.as_tensor(np.tile(atoms.numbers, copies), dtype=torch.long)
    pos = torch.as_tensor(
        np.tile(atoms.positions, (copies, 1)) + np.repeat(np.arange(copies), len(atoms))[:, None] * 20.0
    )
    return z, pos.to(dtype), torch.arange(copies).repeat_interleave(len(atoms))


def case_inputs(name: str, dtype: torch.dtype) -> tuple[tuple[Tensor, ...], dict[str, Tensor]]:
    """Positional and keyword model inputs of a case: (z, pos, batch) and, for water, cell/pbc."""
    _, copies, water_atoms = CASES[name]
    if water_atoms is None:
        return structure(copies, dtype), {}
    atoms = water_box(water_atoms)
    z = torch.as_tensor(atoms.numbers, dtype=torch.long)
    pos = torch.as_tensor(atoms.positions, dtype=dtype)
    cell = torch.as_tensor(atoms.cell.array, dtype=dtype).unsqueeze(0)
    return (z, pos, torch.zeros_like(z)), {"cell": cell, "pbc": torch.ones(1, 3, dtype=torch.bool)}


def run_case(name: str, dtype: torch.dtype, compiled: bool, repeats: int, eager: bool = True) -> str:
    """Markdown rows (eager and/or compiled) of one case, floor measured in this process."""
    config = CASES[name][0]
    model = build(config, dtype)
    args, kwargs = case_inputs(name, dtype)
    if len(args[0]) > LARGE:
        repeats = min(repeats, 3)
    recorder = LinearRecorder()
    with recorder:
        model(*args, **kwargs)
    floor = floor_time(recorder.calls, repeats)
    rows = [("eager", model)] if eager else []
    compile_s = None
    if compiled:
        fast = visnet.compile_model(model, verbose=False)
        start = time.perf_counter()
        fast(*args, **kwargs)
        compile_s = time.perf_counter() - start
        rows.append(("compiled", fast))
    lines = []
    for label, m in rows:
        seconds = best_time(lambda m=m: m(*args, **kwargs), repeats)
        extra = f" (first call {compile_s:.0f} s)" if label == "compiled" else ""
        lines.append(
            f"| {name} ({len(args[0])} atoms) | {label}{extra} | {str(dtype)[6:]} | {seconds * 1e3:.1f} | "
            f"{floor * 1e3:.2f} | {seconds / floor:.1f}x | {torch.get_num_threads()} | "
            f"{os.getloadavg()[0]:.1f} |"
        )
    lines.append(f"<!-- {name}: peak resident memory {peak_gb():.2f} GB, {len(recorder.calls)} linears -->")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["bundled-aspirin"])
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--compile", action="store_true", help="also time visnet.compile_model")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-eager", action="store_true", help="time only the compiled path (with --compile)")
    parser.add_argument("--memory-cap", type=float, default=16.0, help="stop above this resident memory (GB)")
    args = parser.parse_args(argv)
    watch_memory(args.memory_cap)
    torch.set_num_threads(1)
    print("| case | path | dtype | E+F ms | floor ms | ratio | threads | load |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.cases:
        dtype = getattr(torch, args.dtype)
        print(
            run_case(name, dtype, args.compile, args.repeats, eager=not args.no_eager),
            flush=True,
        )


if __name__ == "__main__":
    main()
