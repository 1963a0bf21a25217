"""Labelling throughput: GFN2-xTB energies + forces of rMD17 aspirin frames through
``visnet.labelling.label`` against the floor, the same frames through tblite's ASE calculator in
a plain loop (what the labeller adds: copies, journal lines fsynced per frame, the output file).
``--workers 2`` is timed too, against the floor halved (two processes, one thread each; spawning
them, each importing visnet, is part of its time). The table replaces the bench_label section of
BENCHMARKS.md (``benchlib.write_section``)::

    OMP_NUM_THREADS=1 python scripts/bench_label.py [--frames 40] [--calls 3] [--output BENCHMARKS.md | --no-write]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

import numpy as np
from benchlib import SHARED_ASPIRIN, add_output_arguments, command_line, machine, time_interleaved, write_section


def _frames(count: int) -> list:
    from ase import Atoms

    data = np.load(SHARED_ASPIRIN)
    return [Atoms(numbers=data["z"], positions=data["R"][k]) for k in range(count)]


def _floor(frames: list) -> None:
    from tblite.ase import TBLite

    calc = TBLite(method="GFN2-xTB", verbosity=0)
    for atoms in frames:
        atoms = atoms.copy()
        atoms.calc = calc
        atoms.get_forces()


def _labeller(frames: list, workers: int, folder: Path):
    from visnet.labelling import label

    output = folder / f"w{workers}.extxyz"

    def run() -> None:
        output.unlink(missing_ok=True)  # a complete output would be reused, not recomputed
        report = label(frames, output, workers=workers, progress=False)
        assert report.labelled == len(frames) and not report.failed

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=40, help="rMD17 aspirin frames labelled per call")
    parser.add_argument("--calls", type=int, default=3, help="timed calls of each case")
    add_output_arguments(parser)
    args = parser.parse_args()
    frames = _frames(args.frames)
    folder = Path(tempfile.mkdtemp(prefix="bench_label."))
    try:
        times = time_interleaved(
            {
                "floor": lambda: _floor(frames),
                "label, workers=1": _labeller(frames, 1, folder),
                "label, workers=2": _labeller(frames, 2, folder),
            },
            calls=args.calls,
            warmup=1,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    floor = statistics.median(times["floor"])
    rows = [
        "| case | time (s, median) | ms / frame | floor (s) | ratio |",
        "|---|---|---|---|---|",
        f"| tblite ASE calculator loop (the floor) | {floor:.2f} | {1e3 * floor / args.frames:.1f} | - | - |",
    ]
    for name, workers in (("label, workers=1", 1), ("label, workers=2", 2)):
        median = statistics.median(times[name])
        bound = floor / workers
        rows.append(
            f"| `{name}` | {median:.2f} | {1e3 * median / args.frames:.1f} | {bound:.2f} | {median / bound:.2f} |"
        )
    body = "\n".join(
        [
            f"## Labelling: GFN2-xTB (tblite) on {args.frames} rMD17 aspirin frames (21 atoms), energy + forces",
            "",
            f"`{command_line(__file__)}`; {machine()}; {len(times['floor'])} interleaved calls of each case.",
            "",
            *rows,
            "",
            "The floor of `workers=2` is half the one-process loop (two free cores); its time includes spawning "
            "two processes that import visnet, a fixed cost that long runs amortise.",
        ]
    )
    write_section(__file__, body, args)


if __name__ == "__main__":
    main()
