"""Energy + forces time against the matmul floor (issue 11), eager and compiled, in one process.

The floor of a call is the time of the model's own linear layers at that call's shapes, forward
plus the input-gradient backward that forces need, measured here in the same process: every
``F.linear`` of one eager call is recorded (fused ones included) and replayed alone. Usage::

    OMP_NUM_THREADS=1 python scripts/bench_floor.py [--cases bundled-aspirin ...] [--compile]
        [--dtype float32] [--repeats 20] [--no-eager] [--memory-cap 16] [--output BENCHMARKS.md | --no-write]

One markdown row per case and path: time (ms), floor (ms), ratio, threads and load average; times
are the best of ``--repeats`` calls after one warm-up (cases with over 500 atoms use at most 3).
Water cases are periodic boxes at liquid density (``benchlib.water_box``). The process exits with a
message when its resident memory passes ``--memory-cap`` GB. The table replaces the bench_floor
section of BENCHMARKS.md (``benchlib.write_section``).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from benchlib import (
    BUNDLED,
    CONFIG_LABELS,
    LinearRecorder,
    add_output_arguments,
    aspirin_copies,
    build_model,
    command_line,
    floor_time,
    machine,
    peak_gb,
    time_calls,
    watch_memory,
    water_box,
    write_section,
)
from torch import Tensor

import visnet

CASES = {  # name -> (config, molecule copies, or atoms of a periodic water box)
    "bundled-aspirin": (BUNDLED, 1, None),
    "default-32-aspirins": ("default", 32, None),
    "md17-aspirin": ("md17", 1, None),
    "default-water-1029": ("default", None, 1029),
    "default-water-9999": ("default", None, 9999),
}
LARGE = 500  # atoms above which at most 3 timed calls are made


def case_inputs(name: str, dtype: torch.dtype) -> tuple[tuple[Tensor, ...], dict[str, Tensor]]:
    """Positional and keyword model inputs of a case: (z, pos, batch) and, for water, cell/pbc."""
    _, copies, water_atoms = CASES[name]
    if water_atoms is None:
        return aspirin_copies(copies, dtype), {}
    atoms = water_box(water_atoms)
    z = torch.as_tensor(atoms.numbers, dtype=torch.long)
    pos = torch.as_tensor(atoms.positions, dtype=dtype)
    cell = torch.as_tensor(atoms.cell.array, dtype=dtype).unsqueeze(0)
    return (z, pos, torch.zeros_like(z)), {"cell": cell, "pbc": torch.ones(1, 3, dtype=torch.bool)}


def run_case(name: str, dtype: torch.dtype, compiled: bool, repeats: int, eager: bool = True) -> str:
    """Markdown rows (eager and/or compiled) of one case, floor measured in this process."""
    config = CASES[name][0]
    model = build_model(config, dtype)
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
        seconds = min(time_calls(lambda m=m: m(*args, **kwargs), repeats, warmup=1, min_calls=repeats))
        extra = f" (first call {compile_s:.0f} s)" if label == "compiled" else ""
        lines.append(
            f"| {name} ({len(args[0])} atoms) | {label}{extra} | {str(dtype)[6:]} | {seconds * 1e3:.1f} | "
            f"{floor * 1e3:.2f} | {seconds / floor:.1f}x | {torch.get_num_threads()} | "
            f"{os.getloadavg()[0]:.1f} |"
        )
    lines.append(f"<!-- {name}: peak resident memory {peak_gb():.2f} GB, {len(recorder.calls)} linears -->")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, time the cases, write the section."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["bundled-aspirin"])
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--compile", action="store_true", help="also time visnet.compile_model")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-eager", action="store_true", help="time only the compiled path (with --compile)")
    parser.add_argument("--memory-cap", type=float, default=16.0, help="stop above this resident memory (GB)")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    watch_memory(args.memory_cap, "bench_floor")
    torch.set_num_threads(1)
    lines = [
        "## Energy + forces against the matmul floor, eager and compiled",
        "",
        f"`{command_line(__file__, argv)}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {machine()}. "
        "The floor is the time of the model's own linear layers at the call's shapes (every `F.linear` of one "
        "eager call recorded and replayed alone, forward + input-gradient backward), measured in the same "
        f"process; times are the best of {args.repeats} calls after one warm-up (3 above {LARGE} atoms). Cases: "
        + "; ".join(f"`{c}` = {label}" for c, label in CONFIG_LABELS.items() if c in {v[0] for v in CASES.values()})
        + ".",
        "",
        "| case | path | dtype | E+F ms | floor ms | ratio | threads | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in args.cases:
        rows = run_case(name, getattr(torch, args.dtype), args.compile, args.repeats, eager=not args.no_eager)
        print(rows, flush=True)
        lines.append(rows)
    write_section(__file__, "\n".join(lines), args, echo=args.no_write)


if __name__ == "__main__":
    main()
