"""Labelling is resumable: a run killed mid-way and rerun loses no structure and computes none
twice; a journal or output made from other input or another calculator is refused, not mixed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read, write
from conftest import REPO

from visnet.labelling import label

HERE = Path(__file__).resolve().parent
COUNTING = "label_calculators:counting_emt"
FRAMES = 6


def _frames() -> list[Atoms]:
    frames = []
    for k in range(FRAMES):
        atoms = bulk("Cu", cubic=True)
        atoms.rattle(0.05, seed=k)
        atoms.info["tag"] = k
        frames.append(atoms)
    return frames


def _logged(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def _killed_run(tmp_path: Path, die_at: int, workers: int = 1) -> subprocess.CompletedProcess[str]:
    """``label`` in a subprocess whose calculator kills its process (os._exit) at frame ``die_at``."""
    code = (
        "from visnet.labelling import label\n"
        f"label('in.extxyz', 'out.extxyz', calculator={COUNTING!r}, workers={workers}, progress=False)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO)]),
        "OMP_NUM_THREADS": "1",
        "LABEL_TEST_LOG": str(tmp_path / "calls.log"),
        "LABEL_TEST_DIE_AT": str(die_at),
    }
    return subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write(tmp_path / "in.extxyz", _frames())
    monkeypatch.setenv("LABEL_TEST_LOG", str(tmp_path / "calls.log"))
    monkeypatch.delenv("LABEL_TEST_DIE_AT", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "in.extxyz"


def _check_complete(output: Path, inputs: Path) -> None:
    """Every input frame once, in order, with the energy and forces EMT gives it."""
    out, frames = read(output, ":"), read(inputs, ":")
    assert [a.info["source_index"] for a in out] == list(range(len(frames)))
    for atoms, frame in zip(out, frames):
        frame.calc = EMT()
        assert abs(atoms.get_potential_energy() - frame.get_potential_energy()) < 1e-8
        np.testing.assert_allclose(atoms.get_forces(), frame.get_forces(), rtol=0, atol=1e-7)


def test_killed_and_rerun_every_frame_is_computed_once(inputs: Path) -> None:
    tmp = inputs.parent
    killed = _killed_run(tmp, die_at=3)
    assert killed.returncode == 17, killed.stderr
    assert not (tmp / "out.extxyz").exists() and (tmp / "out.extxyz.partial.jsonl").exists()
    assert _logged(tmp / "calls.log") == [0, 1, 2]
    report = label("in.extxyz", "out.extxyz", calculator=COUNTING, progress=False)
    assert (report.labelled, report.skipped, report.failed) == (3, 3, [])
    assert sorted(_logged(tmp / "calls.log")) == list(range(FRAMES))  # none lost, none twice
    assert not (tmp / "out.extxyz.partial.jsonl").exists()
    _check_complete(tmp / "out.extxyz", inputs)


@pytest.mark.slow  # two pools of spawned workers, each importing visnet: ~20 s on 2 shared cores
def test_a_killed_parallel_run_never_recomputes_a_journaled_frame(inputs: Path) -> None:
    tmp = inputs.parent
    killed = _killed_run(tmp, die_at=4, workers=2)
    assert killed.returncode != 0
    journal = (tmp / "out.extxyz.partial.jsonl").read_text().splitlines()
    journaled = {json.loads(line)["index"] for line in journal[1:]}
    assert 4 not in journaled
    before = len(_logged(tmp / "calls.log"))
    report = label("in.extxyz", "out.extxyz", calculator=COUNTING, workers=2, progress=False)
    assert report.skipped == len(journaled) and report.labelled == FRAMES - len(journaled)
    assert set(_logged(tmp / "calls.log")[before:]) == set(range(FRAMES)) - journaled
    _check_complete(tmp / "out.extxyz", inputs)


def test_a_line_cut_short_by_the_kill_is_computed_again(inputs: Path) -> None:
    tmp = inputs.parent
    assert _killed_run(tmp, die_at=2).returncode == 17
    with open(tmp / "out.extxyz.partial.jsonl", "a") as journal:
        journal.write('{"index": 2, "energy": -1.0, "for')  # a write the kill interrupted
    report = label("in.extxyz", "out.extxyz", calculator=COUNTING, progress=False)
    assert (report.labelled, report.skipped) == (4, 2)
    assert sorted(_logged(tmp / "calls.log")) == list(range(FRAMES))
    _check_complete(tmp / "out.extxyz", inputs)


def test_a_journal_of_other_input_or_another_calculator_is_refused(inputs: Path) -> None:
    tmp = inputs.parent
    assert _killed_run(tmp, die_at=3).returncode == 17
    other = _frames()
    other[5].positions[0, 0] += 1e-3
    with pytest.raises(ValueError, match="made from different input structures"):
        label(other, "out.extxyz", calculator=COUNTING, progress=False)
    with pytest.raises(
        ValueError, match="holds labels of 'label_calculators:counting_emt', not 'ase.calculators.emt:EMT'"
    ):
        label("in.extxyz", "out.extxyz", calculator="ase.calculators.emt:EMT", progress=False)
    assert _logged(tmp / "calls.log") == [0, 1, 2]  # nothing computed by the refused runs


def test_a_rerun_of_a_complete_output_computes_nothing(inputs: Path) -> None:
    tmp = inputs.parent
    frames = _frames()
    frames[2].info["fail"] = True
    first = label(frames, "out.extxyz", calculator="label_calculators:failing_emt", progress=False)
    again = label(frames, "out.extxyz", calculator="label_calculators:failing_emt", progress=False)
    assert (first.labelled, len(first.failed)) == (FRAMES - 1, 1)
    assert (again.labelled, again.skipped, again.failed) == (0, FRAMES, first.failed)
    assert again.failures_path == Path("out.extxyz.failures.csv") and (tmp / again.failures_path).exists()
    with pytest.raises(ValueError, match="already exists and does not hold"):
        label(frames[:4], "out.extxyz", calculator="label_calculators:failing_emt", progress=False)
    with pytest.raises(ValueError, match="already exists and does not hold"):
        label(frames, "out.extxyz", calculator="ase.calculators.emt:EMT", progress=False)
