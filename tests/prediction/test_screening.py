"""``visnet.screen`` / ``visnet predict`` over collections: the same rows as the in-memory
``visnet.predict``, in input order, from files, directories and globs; unreadable frames listed and
the run going on; a killed run resumed without losing, duplicating or recomputing a row; a rerun
with other inputs, models or options refused; two processes giving the one-process output."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.io import read, write
from conftest import REPO, shared_file
from helpers import small_model

import visnet
from visnet.cli import main as visnet_main
from visnet.prediction.collection import expand_inputs, make_plan
from visnet.prediction.screening_module import assigned_chunks
from visnet.prediction.shards import shards_folder
from visnet.prediction.streaming import read_chunk

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

FRAMES = 23  # not a multiple of the chunk sizes used: the last chunk is short


def _molecules(count: int, start: int = 0) -> list[Atoms]:
    """QM9 molecules (H, C, N, O, F; 3-29 atoms), positions Å."""
    data = np.load(shared_file("qm9", "qm9_subset5k.npz"))
    ptr, z, pos = data["ptr"], data["z"], data["pos"]
    return [
        Atoms(numbers=z[ptr[i] : ptr[i + 1]], positions=pos[ptr[i] : ptr[i + 1]]) for i in range(start, start + count)
    ]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A random float64 ViSNet (max_z 10: fluorine is the heaviest element it knows)."""
    return visnet.save_model(small_model(0), tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="module")
def frames_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("frames") / "frames.extxyz"
    write(path, _molecules(FRAMES))
    return path


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_csv_equals_the_in_memory_prediction(model_file, frames_file, tmp_path):
    """Chunks a multiple of the batch size and no failures: the same model calls as ``predict``,
    so the CSV is byte for byte ``write_csv(predict(...))``; no shards are left behind."""
    out = tmp_path / "results.csv"
    summary = visnet.screen(frames_file, out, model=model_file, chunk_size=8, batch_size=4, progress=False)
    assert (summary.structures, summary.failed, summary.computed, summary.errors_file) == (FRAMES, 0, FRAMES, None)
    visnet.write_csv(visnet.predict(frames_file, model=model_file, batch_size=4), tmp_path / "memory.csv")
    assert _text(out) == _text(tmp_path / "memory.csv")
    assert [int(r["index"]) for r in _rows(out)] == list(range(FRAMES))
    assert not shards_folder(out).exists() and not (tmp_path / "results.csv.errors.csv").exists()


def test_parquet_and_extxyz_outputs_hold_the_same_results(model_file, frames_file, tmp_path):
    memory = visnet.predict(frames_file, model=model_file)
    visnet.screen(frames_file, tmp_path / "r.parquet", model=model_file, chunk_size=5, progress=False)
    table = pq.read_table(tmp_path / "r.parquet").to_pydict()
    assert table["index"] == list(range(FRAMES)) and table["source"][3] == f"{frames_file} frame 3"
    # batches of 5 here, of 64 in memory: equal to float64 rounding (1e-12 eV on ~1 eV)
    np.testing.assert_allclose(table["energy [eV]"], [r["energy"] for r in memory], rtol=0, atol=1e-12)

    visnet.screen(frames_file, tmp_path / "r.extxyz", model=model_file, chunk_size=5, progress=False)
    frames = read(tmp_path / "r.extxyz", ":")
    assert len(frames) == FRAMES
    for atoms, r in zip(frames, memory):
        np.testing.assert_allclose(atoms.positions, r.atoms.positions, atol=1e-8)  # extxyz keeps 8 decimals
        # ASE's reader hands energy and forces to a SinglePointCalculator
        assert atoms.get_potential_energy() == pytest.approx(r["energy"], abs=1e-12)
        np.testing.assert_allclose(atoms.get_forces(), r["forces"], rtol=0, atol=1e-8)  # 8 decimals, like positions
        assert atoms.info["source"] == r.source and atoms.info["index"] == r.index
        assert atoms.info["units"] == "energy=eV forces=eV/Å"


def test_directory_and_glob_inputs_in_path_order(model_file, tmp_path):
    """A directory gives its files recursively, sorted by path (hidden ones left out); a glob its
    matches sorted; XYZ and other formats (an ASE trajectory) alike; chunks cross file borders."""
    molecules = _molecules(12)
    folder = tmp_path / "collection"
    (folder / "sub").mkdir(parents=True)
    write(folder / "b.xyz", molecules[4:9])
    write(folder / "a.extxyz", molecules[:4])
    write(folder / "sub" / "c.traj", molecules[9:])
    write(folder / ".hidden.xyz", molecules[:1])
    files = [folder / "a.extxyz", folder / "b.xyz", folder / "sub" / "c.traj"]
    expected = visnet.predict(files, model=model_file)

    visnet.screen(folder, tmp_path / "dir.csv", model=model_file, chunk_size=3, progress=False)
    visnet.screen(str(folder / "**" / "*.*"), tmp_path / "glob.csv", model=model_file, chunk_size=5, progress=False)
    for out in ("dir.csv", "glob.csv"):
        rows = _rows(tmp_path / out)
        assert [r["source"] for r in rows] == [r.source for r in expected]
        assert [int(r["input"]) for r in rows] == [0] * 4 + [1] * 5 + [2] * 3
        np.testing.assert_allclose([float(r["energy [eV]"]) for r in rows], [r["energy"] for r in expected], atol=1e-12)


def test_every_chunk_read_alone_equals_reading_in_one_pass(tmp_path):
    """The plan's chunk starts (byte offsets in XYZ files, frame numbers in others) let a chunk be
    read without the ones before it."""
    molecules = _molecules(17)
    write(tmp_path / "a.xyz", molecules[:7])
    write(tmp_path / "b.traj", molecules[7:10])
    write(tmp_path / "c.extxyz", molecules[10:])
    plan = make_plan(expand_inputs([tmp_path]), chunk_size=4)
    assert plan.frames == (7, 3, 7) and plan.chunks == 5
    structures = [s for c in reversed(range(plan.chunks)) for s in reversed(read_chunk(plan, c))][::-1]
    assert [len(s.atoms) for s in structures] == [len(a) for a in molecules]
    for s, atoms in zip(structures, molecules):
        np.testing.assert_allclose(s.atoms.positions, atoms.positions, atol=1e-8)
    assert assigned_chunks(5, 1, 2, done={3}) == [1] and assigned_chunks(5, 0, 2, done=set()) == [0, 2, 4]


def _bad_collection(tmp_path: Path) -> tuple[Path, Path]:
    """An extxyz with a frame whose coordinates do not parse, lines that are no frame, a frame
    with chlorine (unknown to the model) and a frame cut short; and a file no reader understands."""
    good = _molecules(4)
    buffer = tmp_path / "good.extxyz"
    write(buffer, good)
    lines = buffer.read_text().splitlines(keepends=True)
    first, rest = "".join(lines[: len(good[0]) + 2]), "".join(lines[len(good[0]) + 2 :])
    bad_frame = "2\nProperties=species:S:1:pos:R:3\nH 0.0 0.0 0.0\nH 0.0 zero 0.74\n"
    garbage = "this line is not an atom count\nneither is this\n"
    chlorine = "2\nProperties=species:S:1:pos:R:3\nCl 0.0 0.0 0.0\nH 0.0 0.0 1.3\n"
    cut = "3\ncomment\nO 0.0 0.0 0.0\n"
    frames = tmp_path / "frames.extxyz"
    frames.write_text(first + bad_frame + garbage + chlorine + rest + cut)
    junk = tmp_path / "z_junk.traj"
    junk.write_text("not an ASE trajectory\n")
    return frames, junk


def test_unreadable_frames_are_listed_and_the_run_goes_on(model_file, tmp_path):
    frames, junk = _bad_collection(tmp_path)
    out = tmp_path / "results.csv"
    summary = visnet.screen([frames, junk], out, model=model_file, chunk_size=3, progress=False)
    rows = _rows(out)
    assert summary.structures == len(rows) == 9 and summary.failed == 5
    assert [bool(r["error"]) for r in rows] == [False, True, True, True, False, False, False, True, True]
    errors = _rows(summary.errors_file)
    assert [int(e["index"]) for e in errors] == [1, 2, 3, 7, 8]
    assert [e["source"] for e in errors][:2] == [f"{frames} frame 1", f"{frames} frame 2"]
    reasons = [e["reason"] for e in errors]
    assert "cannot read this frame" in reasons[0] and "expected the number of atoms" in reasons[1]
    assert "Cl (Z=17)" in reasons[2] and "ends after 2 of its 4 lines" in reasons[3]
    assert str(junk) in reasons[4] and "cannot read structure file" in reasons[4]
    good = visnet.predict(_molecules(4), model=model_file)
    energies = [float(r["energy [eV]"]) for r in rows if not r["error"]]
    np.testing.assert_allclose(energies, [r["energy"] for r in good], atol=1e-12)
    assert visnet_main(["predict", str(frames), "--model", str(model_file), "--output", str(out), "--no-progress"]) == 0
    visnet.screen([frames, junk], tmp_path / "results.extxyz", model=model_file, chunk_size=3, progress=False)
    written = read(tmp_path / "results.extxyz", ":")  # a row without atoms is an empty frame with its error
    assert [len(a) for a in written] == [int(r["num_atoms"]) for r in rows]
    assert "cannot read this frame" in written[1].info["error"] and "error" not in written[0].info


class _Stop(Exception):
    pass


def _stop_after(shards: int):
    written = []

    def hook(chunk: int) -> None:
        written.append(chunk)
        if len(written) == shards:
            raise _Stop

    return hook


def test_a_rerun_with_other_inputs_models_or_options_is_refused(model_file, frames_file, tmp_path):
    out = tmp_path / "results.csv"
    run = dict(model=model_file, chunk_size=5, batch_size=5, progress=False)
    with pytest.raises(_Stop):
        visnet.screen(frames_file, out, **run, on_shard=_stop_after(2))
    assert len(list(shards_folder(out).glob("chunk-*.parquet"))) == 2
    with pytest.raises(ValueError, match="other options: batch_size = 5 there, batch_size = 4 now"):
        visnet.screen(frames_file, out, **{**run, "batch_size": 4})
    other_model = visnet.save_model(small_model(1), tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other model: .*model.pt.* there, .*other.pt.* now.*delete"):
        visnet.screen(frames_file, out, **{**run, "model": other_model})
    with pytest.raises(ValueError, match=r"other options: columns = .*forces.* there, columns = .* now"):
        visnet.screen(frames_file, out, **run, properties=["energy"])
    copy = tmp_path / "copy.extxyz"
    write(copy, _molecules(FRAMES + 1))
    with pytest.raises(ValueError, match=r"other inputs: .*frames.extxyz.* there, .*copy.extxyz.* now"):
        visnet.screen(copy, out, **run)
    summary = visnet.screen(frames_file, out, **run)
    assert summary.computed == FRAMES - 10 and [int(r["index"]) for r in _rows(out)] == list(range(FRAMES))


KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    import visnet
    import visnet.prediction.predict as predict_module

    frames, output, model, counts, kill_after = sys.argv[1:6]
    original = predict_module.batch_inputs

    def counting(atoms, *args, **kwargs):  # one line per model call: the structures it computes
        with open(counts, "a") as handle:
            handle.write(f"{len(atoms)}\\n")
        return original(atoms, *args, **kwargs)

    predict_module.batch_inputs = counting
    written = []

    def on_shard(chunk):
        written.append(chunk)
        if len(written) == int(kill_after):
            os.kill(os.getpid(), signal.SIGKILL)

    visnet.screen(frames, output, model=model, chunk_size=5, batch_size=5, progress=False, on_shard=on_shard)
    """
)


def test_killed_run_resumes_without_losing_duplicating_or_recomputing_a_row(model_file, frames_file, tmp_path):
    script, counts, out = tmp_path / "run.py", tmp_path / "counts.txt", tmp_path / "results.csv"
    script.write_text(KILLED_RUN)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

    def run(kill_after: int) -> int:
        argv = [sys.executable, str(script), str(frames_file), str(out), str(model_file), str(counts), str(kill_after)]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300).returncode

    assert run(kill_after=3) == -9 and not out.exists()
    assert sum(map(int, counts.read_text().split())) == 15
    assert run(kill_after=0) == 0
    assert sum(map(int, counts.read_text().split())) == FRAMES  # each structure computed once over both runs
    reference = tmp_path / "reference.csv"
    visnet.screen(frames_file, reference, model=model_file, chunk_size=5, batch_size=5, progress=False)
    assert _text(out) == _text(reference)


def test_command_line_screens_files_with_an_output(model_file, frames_file, tmp_path, capsys):
    out = tmp_path / "results.parquet"
    argv = ["predict", str(frames_file), "--model", str(model_file), "--output", str(out), "--chunk-size", "10"]
    assert visnet_main([*argv, "--keep-shards", "--no-progress"]) == 0
    assert f"{FRAMES} of {FRAMES} structures predicted" in capsys.readouterr().out
    assert len(list(shards_folder(out).glob("chunk-*.parquet"))) == 3
    assert pq.read_table(out).num_rows == FRAMES
    assert visnet_main(["predict", "CCO", "--model", str(model_file), "--output", str(tmp_path / "x.parquet")]) == 2
    assert "files, directories or globs" in capsys.readouterr().err
    assert visnet_main(["predict", "CCO", "--devices", "2"]) == 2
    assert visnet_main(["predict", str(tmp_path / "none*.xyz"), "--output", str(tmp_path / "x.csv")]) == 2
    assert "no files match the pattern" in capsys.readouterr().err


@pytest.mark.slow  # two Lightning DDP processes start (imports, gloo): ~20 s on a loaded machine
def test_two_processes_write_what_one_process_writes(model_file, frames_file, tmp_path):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    visnet.screen(frames_file, one, model=model_file, chunk_size=4, batch_size=4, progress=False)
    argv = [sys.executable, "-m", "visnet.cli", "predict", str(frames_file), "--model", str(model_file)]
    argv += ["--output", str(two), "--devices", "2", "--chunk-size", "4", "--batch-size", "4", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("structures predicted") == 1  # rank 0 alone reports
    assert _text(two) == _text(one)
