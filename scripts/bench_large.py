"""Large systems (issue 21): energy + forces of periodic water boxes of ~1k, 10k and 50k atoms with
the PyG-default config (128 channels, 6 layers, lmax 1, cutoff 5 Å, random weights), per form, each
case in a fresh process: time, the matmul floor, their ratio, peak memory and time per atom.

Forms: ``before`` is the eager model as it ran before the sliced-edge operator (weights that need
gradients: edges in checkpointed slices of ~0.5 GB); ``eager`` the frozen eager model (the resolver's
copy: the sliced-edge operator, eager slice kernels); ``compiled`` ``visnet.compile_model`` (its
graph for large systems: the operator with inductor-compiled slice kernels); ``exported`` an
AOTInductor package's "sliced" program (export time not counted). The floor is the time of the
model's own linear layers at the call's shapes (forward plus input-gradient backward, as
``bench_floor.py``): every ``F.linear`` of one checkpointed forward is recorded, the calls of one
weight merged and replayed in blocks of ``FLOOR_BLOCK`` rows, in the case's process. Usage::

    OMP_NUM_THREADS=1 python scripts/bench_large.py [--cases 9999:compiled:float32 9999:before:float32 ...]
        [--repeats 1] [--memory-cap 18] [--output BENCHMARKS.md | --no-write]

Rows go to the bench_large section of BENCHMARKS.md (``benchlib.write_section``); ``--case JSON``
runs one case (what the parent calls in a subprocess) and prints its JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch
from benchlib import add_output_arguments, build_model, command_line, machine, peak_gb, water_box, write_section
from benchlib import run_case as run_capped

FORMS = ("before", "eager", "compiled", "exported")
# The goal rows first: 10k compiled (≤ 2.5× floor, ≤ 4 GB), the 1k per-atom baseline, 50k
# (≤ 16 GB), float64 at 10k (≤ 2× float32), then the eager path as it was (before).
DEFAULT_CASES = [
    "9999:compiled:float32",
    "1029:compiled:float32",
    "49998:compiled:float32",
    "9999:compiled:float64",
    "9999:before:float32",
]
FLOOR_BLOCK = 65536  # rows per replayed matmul: large enough that per-call overhead is negligible


def merged_linears(model: torch.nn.Module, inputs: dict) -> dict[tuple, list]:
    """Rows of every linear layer of one forward, merged per weight: {key: [rows, weight, bias]}.
    Recorded on the checkpointed path (weights requiring grad), whose linears run in Python."""
    from benchlib import LinearRecorder

    model.requires_grad_(True)
    recorder = LinearRecorder()
    with recorder, torch.enable_grad():
        model(**inputs, compute_forces=False)
    merged: dict[tuple, list] = {}
    for shape, weight, bias in recorder.calls:
        key = (tuple(weight.shape), float(weight.sum()), None if bias is None else float(bias.sum()))
        rows = int(torch.Size(shape[:-1]).numel())
        merged.setdefault(key, [0, weight, bias])[0] += rows
    return merged


def floor_seconds(merged: dict[tuple, list], repeats: int) -> float:
    """Best of ``repeats`` replays of the merged linears (forward + input-gradient backward) in
    blocks of ``FLOOR_BLOCK`` rows; their sum."""
    best = float("inf")
    for _ in range(repeats + 1):  # the first replay warms up
        total = 0.0
        for rows, weight, bias in merged.values():
            for start in range(0, rows, FLOOR_BLOCK):
                x = torch.randn(min(FLOOR_BLOCK, rows - start), weight.shape[1], dtype=weight.dtype)
                x.requires_grad_(True)
                begin = time.perf_counter()
                y = torch.nn.functional.linear(x, weight.detach(), None if bias is None else bias.detach())
                torch.autograd.grad(y, x, torch.ones_like(y))
                total += time.perf_counter() - begin
        best = min(best, total)
    return best


def form_model(form: str, model: torch.nn.Module, workdir: str) -> tuple[torch.nn.Module, float]:
    """The runnable form and its preparation time (s; an export's, not counted in the call)."""
    import visnet

    start = time.perf_counter()
    if form == "before":
        return model.requires_grad_(True), 0.0
    model.requires_grad_(False)
    if form == "eager":
        return model, 0.0
    if form == "compiled":
        return visnet.compile_model(model, verbose=False), 0.0
    path = os.path.join(workdir, "model.pt2")
    visnet.export_model(model, path, verbose=False)
    return visnet.load_exported(path), time.perf_counter() - start


def run_case(case: dict) -> dict:
    """One (atoms, form, dtype) case, in its own process: first call, best of the timed calls, floor."""
    from visnet.neighbors import radius_graph

    torch.set_num_threads(case["threads"])
    dtype = getattr(torch, case["dtype"])
    atoms = water_box(case["atoms"])
    model = build_model("default", dtype)
    inputs = {
        "z": torch.as_tensor(atoms.numbers),
        "pos": torch.as_tensor(atoms.positions, dtype=dtype),
        "cell": torch.as_tensor(atoms.cell.array, dtype=dtype).unsqueeze(0),
        "pbc": torch.ones(1, 3, dtype=torch.bool),
    }
    batch = torch.zeros_like(inputs["z"])
    neighbors = radius_graph(inputs["pos"], model.cutoff, batch, inputs["cell"], inputs["pbc"], self_loops=True)
    with tempfile.TemporaryDirectory() as workdir:
        runnable, prepare_s = form_model(case["form"], model, workdir)
        start = time.perf_counter()
        runnable(**inputs, neighbors=neighbors)
        first = time.perf_counter() - start
        times = []
        for _ in range(case["repeats"]):
            start = time.perf_counter()
            runnable(**inputs, neighbors=neighbors)
            times.append(time.perf_counter() - start)
        peak = peak_gb()
    floor = floor_seconds(merged_linears(model, inputs), 1)
    best = min(times) if times else first
    return {
        **case,
        "edges": neighbors.edge_index.size(1),
        "seconds": best,
        "first_s": first,
        "prepare_s": prepare_s,
        "floor_s": floor,
        "peak_gb": peak,
        "us_per_atom": best / len(atoms) * 1e6,
        "load": os.getloadavg()[0],
    }


def row(result: dict) -> str:
    """One markdown row of a case's result (or its error)."""
    head = f"| {result['atoms']:,} | {result['form']} | {result['dtype']} |"
    if "error" in result:
        return head + f" {result['error']} | | | | | | |"
    first = f"{result['first_s']:.1f}" + (f" (+ export {result['prepare_s']:.0f} s)" if result["prepare_s"] else "")
    return (
        head + f" {result['edges']:,} | {result['seconds']:.2f} | {first} | {result['floor_s']:.2f} | "
        f"{result['seconds'] / result['floor_s']:.2f}× | {result['peak_gb']:.2f} | {result['us_per_atom']:.0f} | "
        f"{result['load']:.1f} |"
    )


def main(argv: list[str] | None = None) -> None:
    """Parse arguments; run each case in a subprocess (or, with --case, this one) and write the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--cases", nargs="+", default=DEFAULT_CASES, help="ATOMS:FORM:DTYPE, FORM one of " + ", ".join(FORMS)
    )
    parser.add_argument("--repeats", type=int, default=1, help="timed calls after the first")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory-cap", type=float, default=18.0, help="stop a case above this resident memory (GB)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))), flush=True)
        return
    lines = [
        "## Large systems: energy + forces of periodic water boxes, PyG-default config (issue 21)",
        "",
        f"`{command_line(__file__, argv)}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {machine()}. "
        "Each case in a fresh process; time = best of the timed calls after the first (which compiles, for "
        "`compiled`); floor = the model's linear layers at the call's shapes, forward + input-gradient backward, "
        "replayed in the same process; peak = the process's VmHWM (Python, torch and the structure included). "
        "Forms: `before` = eager with trainable weights (checkpointed ~0.5 GB edge slices, the eager path before "
        "the sliced-edge operator); `eager` = frozen eager model (sliced-edge operator, eager slice kernels); "
        "`compiled` = `visnet.compile_model` (operator with inductor-compiled slice kernels); `exported` = the "
        "package's sliced program.",
        "",
        "| atoms | form | dtype | edges | E+F s | first call s | floor s | ÷ floor | peak GB | µs/atom | load |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for spec in args.cases:
        atoms, form, dtype = spec.split(":")
        if form not in FORMS or dtype not in ("float32", "float64"):
            parser.error(f"--cases {spec}: expected ATOMS:FORM:DTYPE with FORM in {FORMS} and a float dtype")
        case = {"atoms": int(atoms), "form": form, "dtype": dtype, "threads": args.threads, "repeats": args.repeats}
        lines.append(row(run_capped(__file__, case, args.memory_cap)))
        print(lines[-1], flush=True)
    write_section(__file__, "\n".join(lines), args, echo=args.no_write)


if __name__ == "__main__":
    main()
