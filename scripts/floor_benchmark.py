"""Energy + forces time against the matmul floor (issue 11), eager and compiled, in one process.

The floor of a call is the time of the model's own linear layers at that call's shapes, forward
plus the input-gradient backward that forces need, measured here in the same process: every
``F.linear`` of one eager call is recorded (fused ones included) and replayed alone. Usage::

    OMP_NUM_THREADS=1 python scripts/floor_benchmark.py [--cases bundled-aspirin ...] [--compile]
        [--dtype float32] [--repeats 20]

Prints one markdown row per case: time (ms), floor (ms), ratio, threads and load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import CONFIGS, aspirin_structure  # noqa: E402

import visnet  # noqa: E402

BUNDLED = "bundled"
CASES = {  # name -> (config, molecule copies)
    "bundled-aspirin": (BUNDLED, 1),
    "default-32-aspirins": ("default", 32),
    "md17-aspirin": ("md17", 1),
}


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


def build(config: str, dtype: torch.dtype) -> visnet.ViSNet:
    if config == BUNDLED:
        return visnet.load_model("default", dtype=dtype).eval()
    torch.manual_seed(0)
    return visnet.ViSNet(**CONFIGS[config]).to(dtype).eval()


def structure(copies: int, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    atoms = aspirin_structure()
    z = torch.as_tensor(np.tile(atoms.numbers, copies), dtype=torch.long)
    pos = torch.as_tensor(
        np.tile(atoms.positions, (copies, 1)) + np.repeat(np.arange(copies), len(atoms))[:, None] * 20.0
    )
    return z, pos.to(dtype), torch.arange(copies).repeat_interleave(len(atoms))


def run_case(name: str, dtype: torch.dtype, compiled: bool, repeats: int) -> str:
    config, copies = CASES[name]
    model = build(config, dtype)
    z, pos, batch = structure(copies, dtype)
    recorder = LinearRecorder()
    with recorder:
        model(z, pos, batch)
    floor = floor_time(recorder.calls, repeats)
    rows = [("eager", model)]
    compile_s = None
    if compiled:
        fast = visnet.compile_model(model, verbose=False)
        start = time.perf_counter()
        fast(z, pos, batch)
        compile_s = time.perf_counter() - start
        rows.append(("compiled", fast))
    lines = []
    for label, m in rows:
        seconds = best_time(lambda m=m: m(z, pos, batch), repeats)
        extra = f" (compile {compile_s:.0f} s)" if label == "compiled" else ""
        lines.append(
            f"| {name} ({len(z)} atoms) | {label}{extra} | {str(dtype)[6:]} | {seconds * 1e3:.1f} | "
            f"{floor * 1e3:.2f} | {seconds / floor:.1f}x | {torch.get_num_threads()} | "
            f"{os.getloadavg()[0]:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["bundled-aspirin"])
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--compile", action="store_true", help="also time visnet.compile_model")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print("| case | path | dtype | E+F ms | floor ms | ratio | threads | load |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.cases:
        print(run_case(name, getattr(torch, args.dtype), args.compile, args.repeats), flush=True)


if __name__ == "__main__":
    main()
