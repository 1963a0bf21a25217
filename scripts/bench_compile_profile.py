"""Where the compiled energy + forces call goes, and which inductor options change it (issue 11).

Profiles ``visnet.compile_model`` of the bundled model on aspirin (torch.profiler, record_shapes)
and splits one call into: eager work outside the graph (input checks, neighbour list, the
self-loop layout check, the coincident-atom check, the isolated-atom table), the compiled forward,
the compiled backward that ``torch.autograd.grad`` runs, and inside each compiled region extern
ATen calls (mm/addmm/bmm...) against generated C++ kernels and wrapper time. Then compiles option
variants (inductor config, ``mode``, ``dynamic``, frozen parameters) of the same model and times
them interleaved in this one process against the default compile (same inputs, median of
``--calls`` calls each after warm-up). Nothing in ``visnet/`` is edited: options are applied by
``torch._inductor.config.patch`` around each variant's first (compiling) call. Usage::

    OMP_NUM_THREADS=1 python scripts/bench_compile_profile.py --profile default
    OMP_NUM_THREADS=1 python scripts/bench_compile_profile.py --variants default cpp-wrapper static ...
        [--malloc] [--output BENCHMARKS.md | --no-write]

The markdown tables of a run replace the bench_compile_profile section of BENCHMARKS.md
(``benchlib.write_section``); ``--spin`` (a loop to attach ``perf`` to) writes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import time
import types
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count

import torch
from benchlib import (
    LinearRecorder,
    add_output_arguments,
    aspirin_copies,
    command_line,
    floor_time,
    load,
    machine,
    time_calls,
    time_interleaved,
    write_section,
)
from torch import Tensor

import visnet
import visnet.accel.compile as vc

_COPIES = count()
SECTION: list[str] = []  # the markdown tables of this run, for BENCHMARKS.md
EXTERN = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::linear", "aten::matmul"}


@dataclass(frozen=True)
class Variant:
    """One way of compiling: inductor config overrides, ``torch.compile`` options, frozen weights."""

    inductor: dict[str, object] = field(default_factory=dict)
    mode: str | None = None
    dynamic: bool = True
    no_weight_grad: bool = False  # parameters requires_grad=False (a copy of the model)
    skip_module_guards: bool = False  # guard_filter_fn=torch.compiler.skip_guard_on_all_nn_modules_unsafe


VARIANTS = {
    "default": Variant(),
    "cpp-wrapper": Variant(inductor={"cpp_wrapper": True}),
    "freezing": Variant(inductor={"freezing": True}),
    "max-autotune": Variant(mode="max-autotune-no-cudagraphs"),
    "static": Variant(dynamic=False),
    "simdlen8": Variant(inductor={"cpp.simdlen": 8}),
    "threads1": Variant(inductor={"cpp.threads": 1}),
    "no-weight-grad": Variant(no_weight_grad=True),
    "no-weight-grad+cpp-wrapper": Variant(inductor={"cpp_wrapper": True}, no_weight_grad=True),
    "no-weight-grad+static": Variant(dynamic=False, no_weight_grad=True),
    "skip-module-guards": Variant(skip_module_guards=True),
    "no-weight-grad+skip-module-guards": Variant(no_weight_grad=True, skip_module_guards=True),
    "kernel-profile": Variant(inductor={"cpp.enable_kernel_profile": True}),
}


def emit(text: str) -> None:
    """Print markdown ``text`` and keep it for the section."""
    print(text, flush=True)
    SECTION.append(text)


def make(variant: Variant, model: visnet.ViSNet) -> torch.nn.Module:
    """An uncompiled-yet ``CompiledViSNet`` for ``variant`` (compiling happens on the first call)."""
    if variant.no_weight_grad:
        model = copy.deepcopy(model)
        model.requires_grad_(False)
    fast = vc.compile_model(model, dynamic=variant.dynamic, mode=variant.mode, verbose=False)
    # Dynamo caches compiled code per code object and its guards do not tell inductor configs
    # apart, so every variant compiles its own copy of ``_energy_graph`` (same code, new name).
    bound = fast._energy._torchdynamo_orig_callable  # the method CompiledViSNet compiles
    original = bound.__func__
    code = original.__code__.replace(co_name=f"{original.__name__}_{next(_COPIES)}")
    function = types.FunctionType(code, original.__globals__, code.co_name, original.__defaults__)
    graph = types.MethodType(function, bound.__self__)
    options = {"guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe}
    fast._energy = torch.compile(
        graph,
        dynamic=variant.dynamic,
        mode=variant.mode,
        fullgraph=True,
        options=options if variant.skip_module_guards else None,
    )
    return fast


def first_call(variant: Variant, fast: torch.nn.Module, args: tuple[Tensor, ...]) -> float:
    """Run the compiling first call (forward and the backward autograd.grad compiles) under the
    variant's inductor config; returns its seconds."""
    start = time.perf_counter()
    with torch._inductor.config.patch(variant.inductor):
        fast(*args)
    return time.perf_counter() - start


def call_times(fn: Callable[[], object], calls: int) -> list[float]:
    """Wall seconds of ``calls`` consecutive calls of ``fn`` (no warm-up)."""
    return time_calls(fn, calls, warmup=0, min_calls=calls)


def interleaved(fns: dict[str, Callable[[], object]], calls: int) -> dict[str, list[float]]:
    """Per-call seconds of each function: 5 warm-up calls each, then ``calls`` rounds of one call of
    each in a rotating order (so load changes hit every function alike)."""
    return time_interleaved(fns, calls, warmup=5, min_calls=calls)


# ----------------------------------------------------------------------------- profile
@contextlib.contextmanager
def labelled_phases(timers: dict[str, list[float]] | None = None) -> Iterator[None]:
    """Wrap the eager pieces of ``CompiledViSNet.forward`` and autograd.grad in record_function
    labels, or with ``timers`` in wall-clock timers (seconds appended per label); module globals
    are patched for the duration, then restored."""
    patches: list[tuple[object, str, object]] = []

    def wrap(owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)

        def wrapped(*args: object, **kwargs: object) -> object:
            if timers is not None:
                start = time.perf_counter()
                out = original(*args, **kwargs)
                timers[label].append(time.perf_counter() - start)
                return out
            with torch.profiler.record_function(label):
                return original(*args, **kwargs)

        patches.append((owner, name, original))
        setattr(owner, name, wrapped)

    wrap(vc.validation, "model_inputs", "eager: input checks")
    wrap(vc, "radius_graph", "eager: neighbour list")
    wrap(vc, "self_loops_last", "eager: self-loop layout check")
    if hasattr(vc, "check_distances"):  # module function (HEAD after b3ceb81) or method (b3ceb81)
        wrap(vc, "check_distances", "eager: coincident-atom check")
    else:
        wrap(vc.CompiledViSNet, "_check_distances", "eager: coincident-atom check")
    wrap(vc.CompiledViSNet, "_isolated_table", "eager: isolated-atom table")
    wrap(vc.CompiledViSNet, "_compiled_energy", "compiled forward")
    wrap(torch.autograd, "grad", "autograd.grad (compiled backward)")
    try:
        yield
    finally:
        for owner, name, original in reversed(patches):
            setattr(owner, name, original)


def kind(name: str) -> str:
    """Category of a profiler event inside a compiled region."""
    if name in EXTERN:
        return "extern mm"
    if "cpp_fused" in name or name.startswith("graph_") or "kernel" in name:
        return "generated C++ kernels"
    if name.startswith("aten::"):
        return "other ATen (allocations, extern non-mm)"
    return "wrapper / Python / autograd"


def breakdown(events: list, calls: int) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """(ms per call of each labelled phase incl. children, ms per call of self time by
    (phase, kind)) from a profiler's event list."""
    labels = {
        "eager: input checks",
        "eager: neighbour list",
        "eager: self-loop layout check",
        "eager: coincident-atom check",
        "eager: isolated-atom table",
        "compiled forward",
        "autograd.grad (compiled backward)",
        "E+F call",
    }
    total: dict[str, float] = defaultdict(float)
    split: dict[tuple[str, str], float] = defaultdict(float)
    for ev in events:
        if ev.name in labels:
            total[ev.name] += ev.cpu_time_total / 1e3 / calls
        parent, phase = ev, None
        while parent is not None:
            if parent.name in labels:
                phase = parent.name
                break
            parent = parent.cpu_parent
        if phase is None:
            continue
        k = "label self time (Python around the calls)" if ev.name in labels else kind(ev.name)
        split[(phase, k)] += ev.self_cpu_time_total / 1e3 / calls
    return total, split


def profile(variant_name: str, model: visnet.ViSNet, args: tuple[Tensor, ...], calls: int) -> None:
    """Compile one variant, profile ``calls`` E+F calls and print the breakdown tables."""
    variant = VARIANTS[variant_name]
    fast = make(variant, model)
    print(f"compile ({variant_name}): {first_call(variant, fast, args):.1f} s, load {load():.1f}", flush=True)
    call_times(lambda: fast(*args), 20)
    plain = statistics.median(call_times(lambda: fast(*args), calls))
    with labelled_phases():
        labelled = statistics.median(call_times(lambda: fast(*args), calls))
        activities = [torch.profiler.ProfilerActivity.CPU]
        with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
            for _ in range(calls):
                with torch.profiler.record_function("E+F call"):
                    fast(*args)
    emit(
        f"\nProfile of the `{variant_name}` compile: E+F median of {calls}: {plain * 1e3:.2f} ms unlabelled, "
        f"{labelled * 1e3:.2f} ms with labels (profiler off), load {load():.1f}"
    )
    timers: dict[str, list[float]] = defaultdict(list)
    with labelled_phases(timers):
        whole = call_times(lambda: fast(*args), calls)
    emit(f"\nWall-clock phases, no profiler (median of {calls}):\n\n| phase | ms |\n|---|---:|")
    emit(f"| whole E+F call | {statistics.median(whole) * 1e3:.3f} |")
    for name, t in timers.items():
        emit(f"| {name} | {statistics.median(t) * 1e3:.3f} |")
    total, split = breakdown(list(prof.events()), calls)
    emit("\n| phase | ms per call (incl. children, profiler on) |\n|---|---:|")
    for name, ms in sorted(total.items(), key=lambda kv: -kv[1]):
        emit(f"| {name} | {ms:.2f} |")
    emit("\n| phase | kind | self ms per call |\n|---|---|---:|")
    for (phase, k), ms in sorted(split.items(), key=lambda kv: (kv[0][0], -kv[1])):
        if ms >= 0.005:
            emit(f"| {phase} | {k} | {ms:.3f} |")
    print("\nTop ops by self CPU time (per profile of", calls, "calls):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=70))
    kernels = [e for e in prof.key_averages() if kind(e.key) == "generated C++ kernels"]
    if kernels:
        kernels.sort(key=lambda e: -e.self_cpu_time_total)
        emit(
            "\nGenerated kernels (cpp.enable_kernel_profile):\n\n| kernel | calls per E+F | ms per E+F |\n|---|---:|---:|"
        )
        for e in kernels[:15]:
            emit(f"| {e.key} | {e.count / calls:.0f} | {e.self_cpu_time_total / 1e3 / calls:.3f} |")
    emit("\nExtern mm by input shape:\n")
    rows = [e for e in prof.key_averages(group_by_input_shape=True) if e.key in EXTERN]
    rows.sort(key=lambda e: -e.self_cpu_time_total)
    emit("| op | input shapes | calls per E+F | self ms per E+F |\n|---|---|---:|---:|")
    for e in rows[:25]:
        emit(f"| {e.key} | {e.input_shapes} | {e.count / calls:.0f} | {e.self_cpu_time_total / 1e3 / calls:.3f} |")
    eager_pieces(fast, args, calls)


def eager_pieces(fast: torch.nn.Module, args: tuple[Tensor, ...], calls: int) -> None:
    """Median time of each eager piece of the compiled call, alone (no profiler)."""
    model = fast.model
    z, pos, batch = args
    zz, pp, bb, cell, pbc, g = vc.validation.model_inputs(z, pos, batch, None, None, model.max_z, model.dtype, "cpu")
    check = getattr(vc, "check_distances", None) or fast._check_distances
    nbr = vc.radius_graph(pp.detach(), model.cutoff, bb, cell, pbc, self_loops=True)
    pieces = {
        "input checks (model_inputs)": lambda: vc.validation.model_inputs(
            z, pos, batch, None, None, model.max_z, model.dtype, "cpu"
        ),
        "neighbour list (radius_graph)": lambda: vc.radius_graph(
            pp.detach(), model.cutoff, bb, cell, pbc, self_loops=True
        ),
        "self_loops_last": lambda: vc.self_loops_last(nbr, zz.size(0)),
        "check_distances": lambda: check(pp, None, bb, nbr),
        "_isolated_table": lambda: fast._isolated_table(),
        "whole E+F call": lambda: fast(*args),
    }
    times = interleaved(pieces, calls)
    emit(f"\nEager pieces alone, median of {calls} (load {load():.1f}):\n\n| piece | ms |\n|---|---:|")
    for name, t in times.items():
        emit(f"| {name} | {statistics.median(t) * 1e3:.3f} |")


# ----------------------------------------------------------------------------- options
def compare(names: list[str], model: visnet.ViSNet, args: tuple[Tensor, ...], calls: int) -> None:
    """Compile every variant, then time them interleaved; print ratio to ``default``."""
    torch._dynamo.config.cache_size_limit = 64
    if hasattr(torch._dynamo.config, "recompile_limit"):
        torch._dynamo.config.recompile_limit = 64
    fns: dict[str, Callable[[], object]] = {"eager": lambda: model(*args)}
    compile_s: dict[str, float] = {}
    reference = model(*args)
    for name in ["default"] + [n for n in names if n != "default"]:
        variant = VARIANTS[name]
        fast = make(variant, model)
        before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        try:
            compile_s[name] = first_call(variant, fast, args)
        except Exception as error:  # noqa: BLE001 - report and go on with the other variants
            print(f"{name}: failed to compile: {type(error).__name__}: {str(error)[:300]}", flush=True)
            continue
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"] - before
        if graphs != 1:
            print(f"{name}: expected one new dynamo graph, got {graphs}; not timed", flush=True)
            continue
        out = fast(*args)
        err = (out["forces"] - reference["forces"]).abs().max().item()
        print(
            f"{name}: compile {compile_s[name]:.1f} s, new dynamo graphs {graphs}, max |dF| vs eager {err:.1e}, "
            f"load {load():.1f}",
            flush=True,
        )
        fns[name] = lambda fast=fast: fast(*args)
    recorder = LinearRecorder()
    with recorder:
        model(*args)
    floor = floor_time(recorder.calls, calls)
    start_load = load()
    times = interleaved(fns, calls)
    base = statistics.median(times["default"])
    emit(
        f"\nInterleaved, median of {calls} calls each (one call each per round, rotating order), floor "
        f"{floor * 1e3:.2f} ms, threads {torch.get_num_threads()}, load {start_load:.1f} -> {load():.1f}:\n\n"
        "| variant | compile s | E+F ms (median) | p10–p90 ms | ratio vs default compile | ratio to floor |\n"
        "|---|---:|---:|---|---:|---:|"
    )
    for name, t in times.items():
        q = statistics.quantiles(t, n=10)
        emit(
            f"| {name} | {compile_s.get(name, float('nan')):.0f} | {statistics.median(t) * 1e3:.2f} | "
            f"{q[0] * 1e3:.2f}–{q[-1] * 1e3:.2f} | {statistics.median(t) / base:.2f} | "
            f"{statistics.median(t) / floor:.1f}x |"
        )


def malloc_settings(model: visnet.ViSNet, args: tuple[Tensor, ...], calls: int) -> None:
    """Compiled and eager E+F with glibc's default (dynamic) thresholds first, then alternating
    rounds of a fixed 128 KiB mmap/trim threshold (``visnet.model.allocator``) and no trimming /
    no mmap below 1 GiB (``mallopt``), with minor page faults per call."""
    import ctypes
    import resource

    libc = ctypes.CDLL("libc.so.6")
    fast = make(VARIANTS["default"], model)
    print(f"compile (default): {first_call(VARIANTS['default'], fast, args):.1f} s, load {load():.1f}", flush=True)
    fns = {"compiled": lambda: fast(*args), "eager": lambda: model(*args)}
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    faults: dict[tuple[str, str], list[float]] = defaultdict(list)
    settings = {"fixed 128 KiB": 128 * 1024, "no trim, no mmap < 1 GiB": 1 << 30}
    plan = ["glibc default"] + [name for _ in range(4) for name in settings]
    for setting in plan:
        if setting in settings:
            libc.mallopt(-1, settings[setting])  # M_TRIM_THRESHOLD
            libc.mallopt(-3, settings[setting])  # M_MMAP_THRESHOLD
        for path, fn in fns.items():
            call_times(fn, 5)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t = call_times(fn, max(10, calls // 4))
            faults[(setting, path)].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / len(t))
            times[(setting, path)] += t
    emit(
        f"\nglibc malloc settings (load {load():.1f}):\n\n| setting | path | E+F ms (median) | minor faults per call |\n"
        "|---|---|---:|---:|"
    )
    for (setting, path), t in times.items():
        f = statistics.mean(faults[(setting, path)])
        emit(f"| {setting} | {path} | {statistics.median(t) * 1e3:.2f} | {f:.0f} |")


def spin(model: visnet.ViSNet, args: tuple[Tensor, ...], seconds: float) -> None:
    """Compile the default variant, print SPIN START, then call it for ``seconds`` (for perf)."""
    fast = make(VARIANTS["default"], model)
    first_call(VARIANTS["default"], fast, args)
    call_times(lambda: fast(*args), 20)
    print("SPIN START", os.getpid(), flush=True)
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        fast(*args)
        n += 1
    print(f"SPIN END {n} calls, {seconds / n * 1e3:.2f} ms per call", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the asked parts, write the section of their tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(VARIANTS), help="profile this variant")
    parser.add_argument("--variants", nargs="*", choices=sorted(VARIANTS), default=[])
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--malloc", action="store_true", help="compare glibc malloc settings")
    parser.add_argument("--spin", type=float, default=0.0, help="call the default compile this long (perf)")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)
    model = visnet.load_model("default", dtype=dtype).eval()
    inputs = aspirin_copies(1, dtype)
    header = (
        f"`{command_line(__file__, argv)}` on {time.strftime('%Y-%m-%d')}: {machine()}. Bundled model, aspirin "
        f"({len(inputs[0])} atoms), {args.dtype}."
    )
    print(header, flush=True)
    if args.profile:
        profile(args.profile, model, inputs, args.calls)
    if args.variants:
        compare(args.variants, model, inputs, args.calls)
    if args.malloc:
        malloc_settings(model, inputs, args.calls)
    if args.spin:
        spin(model, inputs, args.spin)
    if SECTION:
        title = "## Where the compiled energy + forces call goes, and which inductor options change it"
        write_section(__file__, "\n".join([title, "", header, *SECTION]), args, echo=False)


if __name__ == "__main__":
    main()
