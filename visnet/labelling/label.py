"""``label``: energies and forces (and stress of periodic cells) of every structure of a file or
list, by GFN2-xTB (tblite) or any ASE calculator, into an extended XYZ file; resumable, parallel,
with failed frames listed in a sidecar CSV.

Files of a run writing ``OUT.extxyz``:

- ``OUT.extxyz.partial.jsonl``: the journal (``visnet.labelling.journal``) while the run lasts;
  a rerun resumes from it and refuses other input or another level of theory.
- ``OUT.extxyz``: written atomically once every frame is done, in input order, failed frames left out.
- ``OUT.extxyz.failures.csv``: ``index,formula,reason`` of each failed frame (only when some failed).
"""

from __future__ import annotations

import csv
import multiprocessing
import os
from collections.abc import Generator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from visnet.errors import VisnetError
from visnet.files.atomic import atomic_open
from visnet.files.paths import check_output_file
from visnet.labelling.calculators import (
    CalculatorFactory,
    TbliteFactory,
    check_picklable,
    check_xtb_elements,
    level_of_theory,
    make_calculator,
)
from visnet.labelling.compute import compute_frame, init_worker, worker_frame
from visnet.labelling.frames import Spin, fingerprint, load_frames, resolve_spins
from visnet.labelling.journal import Journal, journal_path
from visnet.structures.read import read_atoms

__all__ = ["LabelReport", "failures_path_of", "label"]

OUTPUT_SUFFIXES = (".extxyz", ".xyz")
# Label keys of an input frame (an earlier model's or calculation's) dropped so they cannot be
# mistaken for the new labels.
OLD_LABELS = ("energy", "free_energy", "forces", "stress", "energies", "dipole", "charges")
# Frames in flight per worker: enough to keep workers busy, few enough to bound memory.
IN_FLIGHT_PER_WORKER = 4
POSITION_TOLERANCE = 1e-6  # Å: extended XYZ writes positions with 8 decimals


@dataclass
class LabelReport:
    """What ``label`` did.

    Attributes:
        labelled: frames labelled successfully by this run.
        skipped: frames found done (labelled or failed) by an earlier run and not computed again.
        failed: ``(input index, reason)`` of every frame whose calculation failed (this run or an earlier one).
        output: the extended XYZ file written.
        failures_path: the CSV listing the failed frames, None when none failed.
    """

    labelled: int
    skipped: int
    failed: list[tuple[int, str]]
    output: Path
    failures_path: Path | None

    def summary(self) -> str:
        """One line for the user, e.g. "labelled 98 frames (2 resumed), 1 failed (see OUT.failures.csv) -> OUT"."""
        text = f"labelled {self.labelled} frames"
        if self.skipped:
            text += f" ({self.skipped} done before, not recomputed)"
        if self.failed:
            text += f", {len(self.failed)} failed (see {self.failures_path})"
        return f"{text} -> {self.output}"


def failures_path_of(output: Path) -> Path:
    """The sidecar CSV of failed frames next to ``output``: ``OUT.failures.csv``."""
    return output.with_name(output.name + ".failures.csv")


def label(
    inputs: str | os.PathLike | Sequence[Atoms],
    output: str | os.PathLike,
    *,
    method: str = "gfn2-xtb",
    calculator: str | CalculatorFactory | None = None,
    workers: int = 1,
    charge: int | None = None,
    progress: bool = True,
) -> LabelReport:
    """Label every structure of ``inputs`` with energy (eV), forces (eV/Å) and, for periodic cells,
    stress (eV/Å³), and write them to the extended XYZ file ``output`` in input order.

    Each output frame is the input frame (positions (N, 3) Å, cell, info and arrays kept; old
    energies/forces dropped) with ``energy``, ``forces`` (N, 3), ``stress`` (periodic), and in
    ``info``: ``level_of_theory`` (e.g. "GFN2-xTB (tblite 0.8.0)" or the calculator's
    "module:factory"), ``source_index`` (its index in ``inputs``), ``charge`` and ``multiplicity``.
    Read it back with ``ase.io.read(output, ":")`` or ``visnet.data`` readers.

    Resumable: finished frames are journaled (``OUT.partial.jsonl``) as they finish; a rerun
    after a kill computes only the rest. A rerun when ``output`` is complete computes nothing.

    Args:
        inputs: any ASE-readable file (all frames) or a list of ``ase.Atoms``. A frame's
            ``info["charge"]`` and ``info["multiplicity"]`` set its charge and spin (default
            neutral, lowest multiplicity).
        output: the ``.extxyz`` (or ``.xyz``) file to write.
        method: "gfn2-xtb" (default) or "gfn1-xtb", through tblite; ignored when ``calculator`` is given.
        calculator: None, a ``"module:factory"`` string, or a zero-argument callable returning an ASE
            calculator (eV, eV/Å). It finds each frame's charge and multiplicity in ``atoms.info``.
        workers: processes computing in parallel (spawned, one OpenMP thread each). With
            ``workers > 1`` a script must call ``label`` under ``if __name__ == "__main__":``.
        charge: total charge (e) of every frame; a frame whose ``info["charge"]`` differs is refused.
        progress: show a progress bar on stderr.

    Returns:
        A ``LabelReport``; failed frames (SCF not converged, a calculator error) are in
        ``report.failed`` and ``OUT.failures.csv`` (index, formula, reason), not in ``output``.

    Raises:
        ValueError: unreadable or empty input, an element tblite lacks (Z > 86; the atom is named),
            a bad charge or multiplicity, a calculator spec that does not import, a journal or
            output made from other input or another level of theory, a bad output path or workers.
        ImportError: tblite is not installed (the message says ``pip install 'visnet[xtb]'``).

    Example:
        ```python
        from visnet.labelling import label

        report = label("frames.xyz", "labelled.extxyz", method="gfn2-xtb")   # or calculator="mydft:make"
        print(report.summary())   # labelled 3 frames -> labelled.extxyz
        ```
    """
    output = _check_output(output)
    workers = _check_workers(workers)
    factory = make_calculator(method, calculator)
    frames = load_frames(inputs)
    if isinstance(factory, TbliteFactory):
        for index, atoms in enumerate(frames):
            check_xtb_elements(atoms.numbers, index)
    spins = resolve_spins(frames, charge)
    lot = level_of_theory(factory)
    journal_file = journal_path(output)
    if output.exists() and not journal_file.exists():
        return _finished_report(output, frames, lot)
    if workers > 1:
        check_picklable(factory)
    header = {"level_of_theory": lot, "fingerprint": fingerprint(frames, spins), "frames": len(frames)}
    journal = Journal(journal_file, header)
    skipped = len(journal.records)
    todo = [i for i in range(len(frames)) if i not in journal.records]
    try:
        _run(todo, frames, spins, factory, workers, journal, progress)
    finally:
        journal.close()
    records = journal.records
    failed = [(i, str(records[i]["failure"])) for i in sorted(records) if "failure" in records[i]]
    failures_path = _write_failures(failures_path_of(output), frames, failed)
    _write_output(output, frames, spins, records, lot)
    journal.remove()
    labelled = sum(1 for i in todo if "failure" not in records[i])
    return LabelReport(labelled, skipped, failed, output, failures_path)


def _check_output(output: str | os.PathLike) -> Path:
    path = Path(output)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"output {path} must be an extended XYZ file ending in .extxyz (or .xyz)")
    return check_output_file(path, "output file")


def _check_workers(workers: int) -> int:
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1, not {workers!r}")
    return int(workers)


def _run(
    todo: list[int],
    frames: Sequence[Atoms],
    spins: Sequence[Spin],
    factory: CalculatorFactory,
    workers: int,
    journal: Journal,
    progress: bool,
) -> None:
    """Compute the frames ``todo`` and journal each as it finishes."""
    from tqdm.auto import tqdm

    if not todo:
        return
    bar = tqdm(total=len(frames), initial=len(frames) - len(todo), unit="frame", desc="labelling", disable=not progress)
    try:
        calc = _build(factory)  # in the parent too with workers: a factory that fails does so here, by name
        sets_spin = isinstance(factory, TbliteFactory)
        records: Generator[dict[str, Any], None, None] = (
            (compute_frame(i, frames[i], calc, spins[i], sets_spin) for i in todo)
            if workers == 1
            else _parallel(todo, frames, spins, factory, min(workers, len(todo)))
        )
        with closing(records):  # a kill or error stops the workers at once
            for record in records:
                journal.append(record)
                bar.update()
    finally:
        bar.close()


def _build(factory: CalculatorFactory) -> Any:
    try:
        return factory()
    except ImportError as err:
        raise ImportError(f"calculator {level_of_theory(factory)} could not be built: {err}") from err
    except Exception as err:
        raise ValueError(
            f"calculator {level_of_theory(factory)} could not be built: {type(err).__name__}: {err}"
        ) from None


def _parallel(
    todo: list[int], frames: Sequence[Atoms], spins: Sequence[Spin], factory: CalculatorFactory, workers: int
) -> Generator[dict[str, Any], None, None]:
    """Records of the frames ``todo`` computed by ``workers`` spawned processes, as they finish."""
    context = multiprocessing.get_context("spawn")  # no fork: the parent may hold torch/OpenMP threads
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker, initargs=(factory,))
    queue = iter(todo)
    pending: set[Future[dict[str, Any]]] = set()
    try:
        while True:
            while len(pending) < IN_FLIGHT_PER_WORKER * workers and (i := next(queue, None)) is not None:
                pending.add(pool.submit(worker_frame, i, frames[i], spins[i]))
            if not pending:
                break
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    except BrokenProcessPool:
        raise VisnetError(
            "a labelling worker process died (the calculator crashed or ran out of memory); the frames "
            "finished so far are journaled: rerun to resume, or use workers=1 to see the error"
        ) from None
    finally:
        pool.shutdown(wait=not pending, cancel_futures=True)


def _write_failures(path: Path, frames: Sequence[Atoms], failed: list[tuple[int, str]]) -> Path | None:
    if not failed:
        path.unlink(missing_ok=True)  # a list from an earlier run of this output is stale now
        return None
    with atomic_open(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["index", "formula", "reason"])
        writer.writerows([i, frames[i].get_chemical_formula(), reason] for i, reason in failed)
    return path


def _write_output(
    output: Path, frames: Sequence[Atoms], spins: Sequence[Spin], records: dict[int, dict[str, Any]], lot: str
) -> None:
    labelled = [
        _labelled_frame(i, frames[i], spins[i], records[i], lot)
        for i in range(len(frames))
        if "failure" not in records[i]
    ]
    import ase.io

    with atomic_open(output, "w") as handle:
        ase.io.write(handle, labelled, format="extxyz")


def _labelled_frame(index: int, atoms: Atoms, spin: Spin, record: dict[str, Any], lot: str) -> Atoms:
    atoms = atoms.copy()
    for key in OLD_LABELS:
        atoms.info.pop(key, None)
        if key in atoms.arrays and key not in ("numbers", "positions"):
            del atoms.arrays[key]
    atoms.info.update(level_of_theory=lot, source_index=index, charge=spin.charge, multiplicity=spin.multiplicity)
    results = {"energy": record["energy"], "forces": np.asarray(record["forces"], dtype=np.float64)}
    if "stress" in record:
        results["stress"] = np.asarray(record["stress"], dtype=np.float64)
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def _finished_report(output: Path, frames: Sequence[Atoms], lot: str) -> LabelReport:
    """The report of a run whose ``output`` is already complete for these frames; ValueError when
    ``output`` holds anything else (it is never overwritten)."""
    failures_path = failures_path_of(output)
    failed = _read_failures(failures_path)
    done = read_atoms(output) if output.stat().st_size else []
    indices = [atoms.info.get("source_index") for atoms in done]
    matches = (
        all(isinstance(i, (int, np.integer)) for i in indices)
        and all(atoms.info.get("level_of_theory") == lot for atoms in done)
        and sorted([*indices, *(i for i, _ in failed)]) == list(range(len(frames)))
        and all(_same_structure(atoms, frames[i]) for atoms, i in zip(done, indices))
    )
    if not matches:
        raise ValueError(
            f"output {output} already exists and does not hold {lot} labels of these {len(frames)} structures; "
            "delete it or choose another output"
        )
    return LabelReport(0, len(frames), failed, output, failures_path if failed else None)


def _same_structure(done: Atoms, frame: Atoms) -> bool:
    return (
        len(done) == len(frame)
        and bool(np.array_equal(done.numbers, frame.numbers))
        and bool(np.allclose(done.positions, frame.positions, rtol=0.0, atol=POSITION_TOLERANCE))
    )


def _read_failures(path: Path) -> list[tuple[int, str]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8", newline="") as handle:
        return [(int(row["index"]), row["reason"]) for row in csv.DictReader(handle)]
