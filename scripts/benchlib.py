"""What the benchmark scripts of ``scripts/`` share: one timer, the machine line, the memory-capped
subprocess, the one writer of BENCHMARKS.md sections, and the benchmark structures and models.

Each ``scripts/bench_<what>.py`` imports this module as a sibling: ``python scripts/bench_x.py`` puts
``scripts/`` first on ``sys.path``, so no script edits ``sys.path``. Only the standard library, numpy
and torch are imported here at module level (``bench_peers.py`` runs its MACE worker in a Python
without visnet); visnet, ASE and scipy are imported where a function needs them.

Conventions of every benchmark script:

* ``--help`` describes it; ``--output`` (default ``BENCHMARKS.md``) is the file whose section it
  rewrites and ``--no-write`` prints the section and leaves the file as it is (``add_output_arguments``).
* Its section sits between ``<!-- <script stem>:start -->`` and ``<!-- <script stem>:end -->``
  (``write_section``): text outside the markers is never touched, wherever the section sits; a
  missing section goes at the end of its question's part of BENCHMARKS.md (``SECTION_QUESTIONS``),
  or at the end of the file for a script not listed there.
* The section names the command that produced it (``command_line``) and the machine (``machine``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "BENCHMARKS.md"
SHARED_ASPIRIN = REPO.parent / "shared" / "data" / "rmd17" / "rmd17_aspirin_train1000.npz"
WATER_DENSITY = 0.0334  # molecules / Å³ at 300 K, 1 g/cm³
WARMUP = 2  # untimed calls of each function before timing (one when a call takes over a third of the budget)
MIN_CALLS = 3  # timed calls of each function even past the budget


# ----------------------------------------------------------------------------- timing
def time_interleaved(
    fns: dict[str, Callable[[], object]],
    calls: int,
    budget_s: float = math.inf,
    warmup: int = WARMUP,
    min_calls: int = MIN_CALLS,
) -> dict[str, list[float]]:
    """Wall times (s) of each function, timed round-robin so that load drift hits them alike.

    First ``warmup`` untimed calls of each (stopped after one that takes over ``budget_s / min_calls``),
    then rounds of one call of each function, the order rotated by one each round: up to ``calls``
    rounds, at least ``min_calls``, and no new round once ``budget_s`` seconds per function have passed.
    With one function this is a plain timer: ``time_calls``.
    """
    for fn in fns.values():
        for _ in range(warmup):
            begin = time.perf_counter()
            fn()
            if time.perf_counter() - begin > budget_s / max(min_calls, 1):
                break  # a slow call: one warm-up is enough
    labels = list(fns)
    times: dict[str, list[float]] = {label: [] for label in labels}
    start = time.perf_counter()
    rounds = 0
    while rounds < calls and (rounds < min_calls or time.perf_counter() - start < budget_s * len(labels)):
        shift = rounds % len(labels)
        for label in labels[shift:] + labels[:shift]:
            begin = time.perf_counter()
            fns[label]()
            times[label].append(time.perf_counter() - begin)
        rounds += 1
    return times


def time_calls(
    fn: Callable[[], object],
    calls: int,
    budget_s: float = math.inf,
    warmup: int = WARMUP,
    min_calls: int = MIN_CALLS,
) -> list[float]:
    """Wall times (s) of ``fn``: ``time_interleaved`` with one function."""
    return time_interleaved({"fn": fn}, calls, budget_s, warmup, min_calls)["fn"]


def summary(times: list[float]) -> dict[str, float]:
    """Median and minimum (ms) and the number of timed calls."""
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3, "calls": len(times)}


# ----------------------------------------------------------------------------- machine
def load() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the platform's."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line on where a benchmark ran: CPU, cores, torch and its threads, load average now."""
    return (
        f"{platform.machine()} {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch thread(s), 1-minute load average {load():.1f}"
    )


def _status_gb(field: str, pid: int | str = "self") -> float:
    """A memory field of ``/proc/<pid>/status`` in GB (0 when the process has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return 0.0


def rss_gb(pid: int | str = "self") -> float:
    """Resident memory of process ``pid`` (this one by default) in GB; 0 when it has gone."""
    return _status_gb("VmRSS", pid)


def peak_gb(pid: int | str = "self") -> float:
    """Peak resident memory (VmHWM) of process ``pid`` (this one by default) so far, GB."""
    return _status_gb("VmHWM", pid)


def available_gb() -> float:
    """MemAvailable of the machine (GB)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def watch_memory(cap_gb: float, name: str) -> None:
    """Exit this process (status 3, a message on stderr) once its resident memory passes ``cap_gb``."""

    def poll() -> None:
        while True:
            if rss_gb() > cap_gb:
                print(f"{name}: resident memory above {cap_gb:g} GB, stopping", file=sys.stderr, flush=True)
                os._exit(3)
            time.sleep(0.05)

    threading.Thread(target=poll, daemon=True).start()


# ----------------------------------------------------------------------------- capped subprocess
@dataclass
class Finished:
    """A finished subprocess of ``run_capped``."""

    returncode: int
    stdout: str
    stderr: str
    peak_gb: float  # peak resident memory seen while polling
    capped: bool  # killed for passing the memory cap

    def last_json(self) -> dict | None:
        """The last stdout line that is a JSON object, or None."""
        lines = [line for line in self.stdout.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else None


def run_capped(command: list[str], memory_cap_gb: float, env: dict[str, str] | None = None) -> Finished:
    """Run ``command``, polling its resident memory and killing it above ``memory_cap_gb``, so that an
    out-of-memory case is reported instead of taking the machine (or this process) down. Output goes
    to temporary files, so a chatty child cannot block on a full pipe."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env)
        peak, capped = 0.0, False
        while proc.poll() is None:
            peak = max(peak, rss_gb(proc.pid))
            if peak > memory_cap_gb:
                proc.kill()
                capped = True
            time.sleep(0.05)
        out.seek(0)
        err.seek(0)
        return Finished(proc.returncode, out.read(), err.read(), peak, capped)


def run_case(script: str, case: dict, memory_cap_gb: float, env: dict[str, str] | None = None) -> dict:
    """Run one case as ``python <script> --case <json>`` in a fresh process (``OMP_NUM_THREADS`` =
    ``case["threads"]``, plus ``env``) with a resident-memory cap; the case's JSON result (the last
    JSON line it printed), or the case with an "error" saying why it has none."""
    env = {**os.environ, "OMP_NUM_THREADS": str(case["threads"]), **(env or {})}
    done = run_capped([sys.executable, script, "--case", json.dumps(case)], memory_cap_gb, env)
    result = done.last_json()
    if done.returncode == 0 and result is not None:
        return result
    if done.capped:
        return {**case, "error": f"out of memory (> {memory_cap_gb:g} GB)"}
    if done.returncode == -signal.SIGKILL:
        return {**case, "error": f"killed (out of memory?) at {done.peak_gb:.1f} GB resident memory"}
    return {**case, "error": (done.stderr.strip().splitlines() or ["failed"])[-1][:200]}


# ----------------------------------------------------------------------------- BENCHMARKS.md
def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--output`` and ``--no-write``, the same in every benchmark script."""
    parser.add_argument(
        "--output", type=Path, default=BENCHMARKS, help="markdown file whose section this benchmark rewrites"
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print the section only, leave --output as it is (trial runs)"
    )


def add_conditions_argument(parser: argparse.ArgumentParser) -> None:
    """``--conditions``: what else ran on the machine while measuring, stored with the results and
    written into the section (not part of the command it shows)."""
    parser.add_argument(
        "--conditions",
        default="not recorded: other jobs may have shared the cores",
        help="what else ran on the machine while measuring (e.g. 'other jobs paused'), written into the section",
    )


def markers(name: str) -> tuple[str, str]:
    """The start and end markers of the section of benchmark ``name`` (a script's stem)."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


# BENCHMARKS.md is grouped by the question a user asks, each a level-1 heading: a script's section,
# written for the first time, goes at the end of its question's part (then it stays where it is).
SECTION_QUESTIONS = {
    **dict.fromkeys(("bench_md", "bench_accel", "bench_export", "bench_gpu"), "How fast is MD?"),
    **dict.fromkeys(("bench_load", "bench_large", "bench_floor", "bench_compile_profile"), "How large a system?"),
    **dict.fromkeys(
        ("bench_finetune", "bench_train_compile", "bench_organic_model", "bench_learn"),
        "How fast does training go, and what accuracy per CPU-minute?",
    ),
    **dict.fromkeys(("bench_pyg", "bench_peers"), "Against MACE, NequIP and PyG"),
    **dict.fromkeys(("bench_lammps", "bench_torchsim"), "Engines: LAMMPS, TorchSim, OpenMM"),
    **dict.fromkeys(
        ("bench_label", "bench_screening", "bench_proteins", "bench_chignolin", "mlmm_chignolin"),
        "Labelling, screening, proteins",
    ),  # mlmm_chignolin: written by hand from scripts/run_mlmm.py's output (placed here all the same)
    "bench_refactor": "Checks between source trees",
}


def _insert_new_section(text: str, name: str, section: str) -> str:
    """``text`` with ``section`` at the end of its question's part (before the next level-1
    heading), or at the end when the question's heading is absent or ``name`` has none."""
    question = SECTION_QUESTIONS.get(name)
    lines = text.rstrip("\n").split("\n")
    heading = f"# {question}"
    if question is None or heading not in lines:
        return "\n".join(lines) + "\n\n" + section + "\n"
    fenced, at = False, len(lines)
    for k in range(lines.index(heading) + 1, len(lines)):
        fenced = fenced != lines[k].startswith("```")
        if not fenced and lines[k].startswith("# "):
            at = k
            break
    head = "\n".join(lines[:at]).rstrip("\n")
    rest = "\n".join(lines[at:])
    return head + "\n\n" + section + "\n" + ("\n" + rest + "\n" if rest else "")


def replace_section(path: Path, name: str, body: str) -> None:
    """Put ``body`` between the markers of ``name`` in ``path`` (a missing section goes under its
    question, ``SECTION_QUESTIONS``; the file is created when missing); nothing else in the file
    changes. The file is written to a temporary name and renamed, so a crash leaves the old one whole."""
    start, end = markers(name)
    section = f"{start}\n{body.strip(chr(10))}\n{end}"
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = _insert_new_section(text, name, section)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_section(script: str, body: str, args: argparse.Namespace, echo: bool = True) -> None:
    """Print the section of benchmark ``script`` (its ``__file__``; ``echo=False``: printed already)
    and, unless ``args.no_write``, write it into ``args.output`` between the script's markers: the
    one writer of BENCHMARKS.md."""
    name = Path(script).stem
    if echo:
        print(body, flush=True)
    if args.no_write:
        print(f"--no-write: {args.output} left as it is", flush=True)
        return
    replace_section(Path(args.output), name, body)
    print(f"wrote the {name} section of {args.output}", flush=True)


def command_line(script: str, argv: list[str] | None = None) -> str:
    """The command that reproduces this run, for the section: ``[OMP_NUM_THREADS=n] python
    scripts/<script> <arguments>`` (``argv`` defaults to this process's arguments; ``--output`` and
    ``--no-write``, which choose where the section goes, and ``--conditions`` (``add_conditions_argument``),
    which describes the machine, are left out)."""
    args, rest = [], list(sys.argv[1:] if argv is None else argv)
    while rest:
        arg = rest.pop(0)
        if arg in ("--output", "--conditions"):
            rest = rest[1:]
        elif arg != "--no-write" and not arg.startswith(("--output=", "--conditions=")):
            args.append(arg)
    threads = os.environ.get("OMP_NUM_THREADS")
    words = ["python", f"scripts/{Path(script).name}", *(shlex.quote(a) for a in args)]
    return (f"OMP_NUM_THREADS={threads} " if threads else "") + " ".join(words)


# ----------------------------------------------------------------------------- structures
def aspirin_structure():
    """ase.Atoms of aspirin: frame 0 of the shared rMD17 file, or the bundled copy without ../shared."""
    from ase import Atoms

    if SHARED_ASPIRIN.exists():
        data = np.load(SHARED_ASPIRIN)
        return Atoms(numbers=data["z"], positions=data["R"][0])
    from visnet.structures.molecules import load_structure

    return load_structure("aspirin")


def aspirin_copies(copies: int, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """(z, pos, batch) of ``copies`` aspirins 20 Å apart (no edges between copies)."""
    atoms = aspirin_structure()
    z = torch.as_tensor(np.tile(atoms.numbers, copies), dtype=torch.long)
    pos = torch.as_tensor(
        np.tile(atoms.positions, (copies, 1)) + np.repeat(np.arange(copies), len(atoms))[:, None] * 20.0
    )
    return z, pos.to(dtype), torch.arange(copies).repeat_interleave(len(atoms))


def water_box(num_atoms: int, seed: int = 0):
    """Periodic water at liquid density: randomly oriented rigid molecules on a jittered cubic grid.

    Returns:
        ase.Atoms with 3 * (num_atoms // 3) atoms, a cubic cell and pbc=True.
    """
    from ase import Atoms
    from scipy.spatial.transform import Rotation

    molecules = num_atoms // 3
    side = (molecules / WATER_DENSITY) ** (1 / 3)
    per_edge = int(np.ceil(molecules ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(per_edge)] * 3, indexing="ij"), -1).reshape(-1, 3)[:molecules]
    rng = np.random.default_rng(seed)
    centres = (grid + 0.5) * side / per_edge + rng.normal(0, 0.05, grid.shape)
    template = np.array([[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0], [-0.2400, 0.9266, 0.0]])
    rotations = Rotation.random(molecules, random_state=seed).as_matrix()
    pos = centres[:, None, :] + np.einsum("mij,aj->mai", rotations, template)
    return Atoms(numbers=[8, 1, 1] * molecules, positions=pos.reshape(-1, 3), cell=np.eye(3) * side, pbc=True)


def water_cluster(num_atoms: int):
    """Water at liquid density on a jittered grid, all molecules in one orientation, as one cluster
    (no cell, no PBC): the water of ``bench_pyg.py`` and ``bench_gpu.py``."""
    from ase import Atoms

    molecules = num_atoms // 3
    side = (molecules / WATER_DENSITY) ** (1 / 3)
    per_edge = int(np.ceil(molecules ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(per_edge)] * 3, indexing="ij"), -1).reshape(-1, 3)[:molecules]
    rng = np.random.default_rng(0)
    centres = (grid + 0.5) * side / per_edge + rng.normal(0, 0.1, grid.shape)
    template = np.array([[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0], [-0.2400, 0.9266, 0.0]])
    pos = (centres[:, None, :] + template[None]).reshape(-1, 3)
    return Atoms(numbers=[8, 1, 1] * molecules, positions=pos)


# ----------------------------------------------------------------------------- models and the floor
BUNDLED = "bundled"
CONFIGS = {
    "default": dict(hidden_channels=128, num_layers=6, lmax=1),  # PyG's defaults, 1.7M parameters
    "md17": dict(hidden_channels=256, num_layers=9, lmax=2),  # the paper's MD17 config, 9.8M parameters
}
CONFIG_LABELS = {
    BUNDLED: "bundled model (64 ch, 3 layers, lmax 2)",
    "default": "PyG-default config (128 ch, 6 layers, lmax 1, random weights)",
    "md17": "MD17 config (256 ch, 9 layers, lmax 2, random weights)",
}


def build_model(config: str, dtype: torch.dtype):
    """The bundled model (``config == "bundled"``), or a seeded random ViSNet of a ``CONFIGS`` entry; eval mode."""
    import visnet

    if config == BUNDLED:
        return visnet.load_model("default", dtype=dtype).eval()
    torch.manual_seed(0)
    return visnet.ViSNet(**CONFIGS[config]).to(dtype).eval()


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


def floor_time(calls: list[tuple[torch.Size, Tensor, Tensor | None]], repeats: int) -> float:
    """The matmul floor (s): best of ``repeats`` replays (after one warm-up) of the recorded linears,
    each forward + backward to its input, in one backward call as in the model."""
    inputs = [torch.randn(shape, dtype=w.dtype).requires_grad_(True) for shape, w, _ in calls]

    def run() -> None:
        outputs = [torch.nn.functional.linear(x, w, b) for x, (_, w, b) in zip(inputs, calls, strict=True)]
        torch.autograd.grad(outputs, inputs, [torch.ones_like(y) for y in outputs])

    return min(time_calls(run, repeats, warmup=1, min_calls=repeats))
