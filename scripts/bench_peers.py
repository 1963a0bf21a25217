"""Energy + forces of our ViSNet (time, floor, ratio) with MACE at equal parameter count as a peer
row, in one run (issue 11).

Our rows run in this process (the package's ``.venv``): the eager model call, float32, one torch
thread, its matmul floor measured here as ``scripts/bench_floor.py`` does (every ``F.linear`` of
one call recorded and replayed alone, forward plus input-gradient backward). Each MACE row runs in a
subprocess of the peer environment ``.venv-peers`` (``make bench-peers`` creates it; mace-torch is
not a dependency of the package) on the same structure, cutoff, dtype and thread count: a randomly
initialised ``ScaleShiftMACE`` with MACE's default training hyperparameters (2 interactions,
correlation 3, spherical harmonics to l = 3, 8 Bessel functions, radial MLP [64, 64, 64]), hidden
irreps up to our ``lmax``, r_max = our cutoff, the benchmark's elements (H, C, O), and the number of
channels chosen so that its parameter count is closest to ours. Usage::

    OMP_NUM_THREADS=1 python scripts/bench_peers.py [--cases bundled-aspirin ...]
        [--calls 50] [--budget 30] [--peers-python .venv-peers/bin/python] [--output BENCHMARKS.md | --no-write]

Times are the median of up to ``--calls`` calls after two warm-up calls (one when a call takes over
a third of the budget): at least 3 calls, and no new one once a row has run ``--budget`` seconds.
A MACE row above ``--memory-cap`` GB is stopped and reported. The table replaces the bench_peers
section of ``--output`` (``benchlib.write_section``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from benchlib import (
    CONFIG_LABELS,
    REPO,
    add_output_arguments,
    command_line,
    cpu_name,
    run_capped,
    summary,
    time_calls,
    write_section,
)

PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"
ELEMENTS = (1, 6, 8)  # H, C, O: every element of the benchmark structures
CASES = {  # name -> (our config, aspirin copies, or atoms of a periodic water box)
    "bundled-aspirin": ("bundled", 1, None),
    "default-aspirin": ("default", 1, None),
    "default-32-aspirins": ("default", 32, None),
    "default-water-1029": ("default", None, 1029),
}


# ----------------------------------------------------------------------------- structures
def case_structure(name: str) -> dict[str, np.ndarray]:
    """z (N,), pos (N, 3) Å, batch (N,), cell (3, 3) Å (zeros without one), pbc (3,) of a case.

    Aspirin copies are the rMD17 aspirin geometry the repository uses, 20 Å apart as in
    ``benchlib.aspirin_copies`` (no edges between copies); water is ``benchlib.water_box``.
    """
    from benchlib import aspirin_copies, water_box

    _, copies, water_atoms = CASES[name]
    if water_atoms is None:
        z, pos, batch = aspirin_copies(copies, torch.float64)
        return {
            "z": z.numpy(),
            "pos": pos.numpy(),
            "batch": batch.numpy(),
            "cell": np.zeros((3, 3)),
            "pbc": np.zeros(3, dtype=bool),
        }
    atoms = water_box(water_atoms)
    return {
        "z": atoms.numbers.astype(np.int64),
        "pos": atoms.positions.astype(np.float64),
        "batch": np.zeros(len(atoms), dtype=np.int64),
        "cell": atoms.cell.array.astype(np.float64),
        "pbc": np.ones(3, dtype=bool),
    }


# ----------------------------------------------------------------------------- our rows
def ours(name: str, data: dict[str, np.ndarray], dtype: torch.dtype, calls: int, budget_s: float) -> dict[str, Any]:
    """Our eager E+F call (neighbour list included, as ``bench_floor`` times it), its matmul
    floor (best of up to 20 replays, ``benchlib.floor_time``) and its neighbour list."""
    from benchlib import LinearRecorder, build_model, floor_time

    import visnet

    model = build_model(CASES[name][0], dtype)
    z = torch.as_tensor(data["z"])
    pos = torch.as_tensor(data["pos"], dtype=dtype)
    batch = torch.as_tensor(data["batch"])
    kwargs: dict[str, torch.Tensor] = {}
    if data["pbc"].any():
        kwargs = {
            "cell": torch.as_tensor(data["cell"], dtype=dtype).unsqueeze(0),
            "pbc": torch.as_tensor(data["pbc"]).unsqueeze(0),
        }
    recorder = LinearRecorder()
    with recorder:
        out = model(z, pos, batch, **kwargs)
    assert torch.isfinite(out["forces"]).all()
    times = time_calls(lambda: model(z, pos, batch, **kwargs), calls, budget_s)
    median_s = statistics.median(times)
    floor_s = floor_time(recorder.calls, max(3, min(20, int(budget_s / median_s))))

    def neighbours() -> visnet.NeighborList:
        return visnet.radius_graph(pos, model.cutoff, batch, kwargs.get("cell"), kwargs.get("pbc"), self_loops=True)

    graph = neighbours()
    return {
        **summary(times),
        "floor_ms": floor_s * 1e3,
        "graph_ms": statistics.median(time_calls(neighbours, calls, budget_s / 10)) * 1e3,
        "edges": int(graph.num_edges) - len(z),  # directed pairs, self-loops not counted
        "params": sum(p.numel() for p in model.parameters()),
        "cutoff": float(model.cutoff),
        "lmax": int(model.hparams["lmax"]),
        "load": os.getloadavg()[0],
    }


# ----------------------------------------------------------------------------- MACE rows (peer env)
def mace_model(channels: int, max_l: int, r_max: float, avg_num_neighbors: float) -> torch.nn.Module:
    """A randomly initialised ScaleShiftMACE with ``mace run_train``'s default hyperparameters."""
    import mace  # noqa: F401  (before e3nn: it lets e3nn 0.4.4 load its constants under torch >= 2.6)
    from e3nn import o3
    from mace import modules

    irreps = " + ".join(f"{channels}x{ell}{'e' if ell % 2 == 0 else 'o'}" for ell in range(max_l + 1))
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    torch.manual_seed(0)
    return modules.ScaleShiftMACE(
        r_max=r_max,
        num_bessel=8,
        num_polynomial_cutoff=5,
        max_ell=3,
        interaction_cls=block,
        interaction_cls_first=block,
        num_interactions=2,
        num_elements=len(ELEMENTS),
        hidden_irreps=o3.Irreps(irreps),
        MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=np.zeros(len(ELEMENTS)),
        avg_num_neighbors=avg_num_neighbors,
        atomic_numbers=list(ELEMENTS),
        correlation=3,
        gate=torch.nn.functional.silu,
        radial_MLP=[64, 64, 64],
        use_reduced_cg=False,
        atomic_inter_scale=1.0,
        atomic_inter_shift=0.0,
    )


def match_channels(target: int, max_l: int, r_max: float) -> tuple[int, int]:
    """(channels, parameters) of the MACE whose parameter count is closest to ``target`` (bisection;
    the count grows monotonically with the channels)."""

    @functools.cache
    def count(channels: int) -> int:
        return sum(p.numel() for p in mace_model(channels, max_l, r_max, 10.0).parameters())

    low, high = 1, 64
    while count(high) < target:
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if count(mid) < target else (low, mid)
    best = min((low, high), key=lambda c: abs(count(c) - target))
    return best, count(best)


def mace_worker(spec_path: str) -> None:
    """Time MACE E+F on the structure of ``spec_path`` (JSON + npz); print one JSON line."""
    import mace  # noqa: F401
    from ase import Atoms
    from mace import data as mace_data
    from mace.tools import torch_geometric, utils

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    dtype = getattr(torch, spec["dtype"])
    torch.set_default_dtype(dtype)
    arrays = np.load(spec["structure"])
    if spec["channels"] is None:
        channels, params = match_channels(spec["target_params"], spec["max_l"], spec["cutoff"])
    else:
        channels = spec["channels"]
    z_table = utils.AtomicNumberTable(list(ELEMENTS))
    molecules = []
    for index in np.unique(arrays["batch"]):
        mask = arrays["batch"] == index
        pos, cell = arrays["pos"][mask], arrays["cell"]
        if not arrays["pbc"].any():  # MACE bins a box spanning |pos|: far-off copies cost it minutes
            pos, cell = pos - pos.mean(0), None
        molecules.append(Atoms(numbers=arrays["z"][mask], positions=pos, cell=cell, pbc=arrays["pbc"]))

    def graph() -> dict[str, torch.Tensor]:  # what MACE's calculator does before each model call
        graphs = [
            mace_data.AtomicData.from_config(mace_data.config_from_atoms(a), z_table=z_table, cutoff=spec["cutoff"])
            for a in molecules
        ]
        loader = torch_geometric.dataloader.DataLoader(graphs, batch_size=len(graphs), shuffle=False)
        return next(iter(loader)).to_dict()

    batch = graph()
    edges = int(batch["edge_index"].shape[1])
    model = mace_model(channels, spec["max_l"], spec["cutoff"], edges / len(arrays["z"])).to(dtype).eval()
    out = model(batch, compute_force=True, training=False)
    assert torch.isfinite(out["forces"]).all() and out["forces"].dtype == dtype
    params = sum(p.numel() for p in model.parameters())
    times = time_calls(lambda: model(batch, compute_force=True, training=False), spec["calls"], spec["budget_s"])
    result = {
        **summary(times),
        "graph_ms": statistics.median(time_calls(graph, spec["calls"], spec["budget_s"] / 10)) * 1e3,
        "edges": edges,
        "params": params,
        "channels": channels,
        "load": os.getloadavg()[0],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "mace": _version("mace-torch"),
        "e3nn": _version("e3nn"),
    }
    print(json.dumps(result), flush=True)


def _version(package: str) -> str:
    """Installed version of ``package``."""
    from importlib.metadata import version

    return version(package)


def run_mace(
    name: str,
    data: dict[str, np.ndarray],
    ours_row: dict[str, Any],
    args: argparse.Namespace,
    workdir: Path,
    channels: int | None = None,
) -> dict[str, Any]:
    """Run ``mace_worker`` for a case in the peer environment's Python (``channels``: reuse a match
    made for an earlier case of the same configuration); its result."""
    np.savez(workdir / f"{name}.npz", **data)
    spec = {
        "structure": str(workdir / f"{name}.npz"),
        "target_params": ours_row["params"],
        "max_l": ours_row["lmax"],
        "cutoff": ours_row["cutoff"],
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "calls": args.calls,
        "budget_s": args.budget,
        "channels": channels,
    }
    (workdir / f"{name}.json").write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "MKL_NUM_THREADS": str(spec["threads"])}
    command = [str(args.peers_python), __file__, "--mace-worker", str(workdir / f"{name}.json")]
    done = run_capped(command, args.memory_cap, env)
    result = done.last_json()
    if done.returncode == 0 and result is not None:
        return {**result, "peak_gb": done.peak_gb}
    if done.capped:
        return {"error": f"out of memory (> {args.memory_cap:g} GB)"}
    raise SystemExit(f"MACE worker failed for {name} (exit {done.returncode}):\n{done.stderr[-3000:]}")


# ----------------------------------------------------------------------------- report
def markdown(rows: list[tuple[str, dict[str, Any], dict[str, Any]]], command: str, dtype: str) -> str:
    """The bench_peers section of BENCHMARKS.md for the measured rows."""
    peer = next((r[2] for r in rows if "error" not in r[2]), {"torch": "?", "mace": "?", "e3nn": "?"})
    cpu = cpu_name()
    loads = [r[key]["load"] for r in rows for key in (1, 2) if "load" in r[key]]
    lines = [
        f"## Peers: MACE at equal parameter count ({dtype}, {torch.get_num_threads()} thread, eager)",
        "",
        f"`{command}` on {time.strftime('%Y-%m-%d', time.gmtime())}: {platform.machine()} {cpu}, "
        f"{os.cpu_count()} cores, torch {torch.__version__} (both environments; MACE's: torch {peer['torch']}, "
        f"mace-torch {peer['mace']}, e3nn {peer['e3nn']}, from `make bench-peers`), {torch.get_num_threads()} torch "
        f"thread and `OMP_NUM_THREADS=1` for both, 1-minute load average {min(loads):.1f}–{max(loads):.1f} "
        "(per row below). Ours in this process; each MACE row in a subprocess of `.venv-peers`, right after "
        "ours on the same structure.",
        "",
        "| case | atoms | model | parameters | edges | E+F ms (median) | min ms | calls | floor ms | "
        "÷ floor | graph ms | MACE ÷ ours | load |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, our, peer in rows:
        atoms = CASES[name]
        n_atoms = 21 * atoms[1] if atoms[1] else atoms[2]
        lines.append(
            f"| {name} | {n_atoms} | ours: {CONFIG_LABELS[atoms[0]]} | {our['params']:,} | {our['edges']:,} | "
            f"{our['median_ms']:.1f} | {our['min_ms']:.1f} | {our['calls']} | {our['floor_ms']:.2f} | "
            f"{our['median_ms'] / our['floor_ms']:.1f}× | {our['graph_ms']:.2f} | 1.00 | {our['load']:.1f} |"
        )
        if "error" in peer:
            lines.append(f"| {name} | {n_atoms} | MACE | — | — | {peer['error']} | — | — | — | — | — | — | — |")
            continue
        lines.append(
            f"| {name} | {n_atoms} | MACE: {peer['channels']} ch, max_L {our['lmax']}, random weights | "
            f"{peer['params']:,} ({(peer['params'] / our['params'] - 1) * 100:+.1f} %) | {peer['edges']:,} | "
            f"{peer['median_ms']:.1f} | {peer['min_ms']:.1f} | {peer['calls']} | — | — | {peer['graph_ms']:.2f} | "
            f"**{peer['median_ms'] / our['median_ms']:.2f}** | {peer['load']:.1f} |"
        )
    lines += [
        "",
        "*E+F ms*: one energy + forces call, median after two warm-up calls (one when a call takes over a third of the budget). Ours is the eager model call "
        "`model(z, pos, batch[, cell, pbc])`, which builds its neighbour list inside (*graph ms*, included in its "
        "E+F); MACE's is `model(batch, compute_force=True)` on a prebuilt graph: its *graph ms* (matscipy "
        "neighbour list + `AtomicData` + collation, what its ASE calculator does before each call) is **not** "
        "in its E+F. *edges*: directed pairs within the cutoff, self-loops not counted (the two must agree: "
        "same structure, same cutoff; each molecule of a batch is given to MACE centred at the origin — its non-periodic neighbour list bins a box spanning the coordinates, and the 32 copies 620 Å from the origin took it 94 s per graph — which changes no distance). *floor*: our own linear layers at this call's shapes, forward + "
        "input-gradient backward, best of up to 20 replays in this process (`scripts/bench_floor.py`); "
        "MACE's layers are e3nn tensor products, not `F.linear`, so it gets no floor here. *MACE ÷ ours* > 1: "
        "MACE is slower.",
        "",
        "MACE model: `ScaleShiftMACE`, randomly initialised (seed 0; timing does not depend on the weights), "
        "`mace run_train`'s defaults — 2 interactions (`RealAgnosticResidualInteractionBlock`), correlation 3, "
        "spherical harmonics to l = 3, 8 Bessel functions, polynomial cutoff p = 5, radial MLP [64, 64, 64], "
        "readout MLP 16x0e, full CG basis — with hidden irreps `C x 0e + C x 1o (+ C x 2e)` up to our lmax, "
        "r_max = our cutoff (5 Å), elements H, C, O (the benchmark's), and C chosen by bisection as the channel "
        "count whose parameter count is closest to ours (our count includes the embedding rows of elements "
        "these structures do not use: max_z 10 bundled, 100 default). One MACE model per configuration "
        "serves all its structures.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments; run the MACE worker, or the whole benchmark."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--calls", type=int, default=50, help="most timed calls per row (median reported)")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds of timed calls per row (at least 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (and OMP_NUM_THREADS of MACE)")
    parser.add_argument("--peers-python", type=Path, default=PEERS_PYTHON, help="Python of the env with mace-torch")
    parser.add_argument("--memory-cap", type=float, default=12.0, help="GB of resident memory a MACE row may use")
    add_output_arguments(parser)
    parser.add_argument("--mace-worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mace_worker:
        mace_worker(args.mace_worker)
        return
    if not args.peers_python.exists():
        raise SystemExit(
            f"peer environment missing: {args.peers_python} not found. Run `make bench-peers` (creates .venv-peers "
            "with torch==2.13.0 and mace-torch, outside the package's dependencies), or pass --peers-python."
        )
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    rows = []
    matched: dict[str, int] = {}  # our config -> MACE channels
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases:
            data = case_structure(name)
            our = ours(name, data, dtype, args.calls, args.budget)
            peer = run_mace(name, data, our, args, Path(tmp), matched.get(CASES[name][0]))
            rows.append((name, our, peer))
            if "error" not in peer:
                matched[CASES[name][0]] = peer["channels"]
            mace_text = peer.get("error") or (
                f"{peer['median_ms']:.1f} ms ({peer['channels']} ch, {peer['params']:,} params, "
                f"peak {peer['peak_gb']:.1f} GB), load {peer['load']:.1f}"
            )
            print(
                f"{name}: ours {our['median_ms']:.1f} ms (floor {our['floor_ms']:.2f}, {our['params']:,} params, "
                f"load {our['load']:.1f}), MACE {mace_text}",
                flush=True,
            )
    write_section(__file__, markdown(rows, command_line(__file__, argv), args.dtype), args)


if __name__ == "__main__":
    main()
