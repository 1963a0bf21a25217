"""Active learning (``visnet learn``) with a tiny random start model, EMT as the oracle and a
one-epoch training config: two rounds run, round 1's frames are in round 2's training set, a run
continued with more rounds redoes nothing finished, a member killed mid-fit continues from its
last.ckpt, a round whose labels all failed fine-tunes nothing, a run folder in use is refused,
changed options are refused, one report row per round; bad input gives one-line errors."""

from __future__ import annotations

import csv
import re
import shutil
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import ase.io
import learn_oracles
import numpy as np
import pytest
import torch
from conftest import randomize_biases

import visnet
import visnet.labelling
from visnet.cli.fit import lightning_main
from visnet.cli.main import main as cli_main
from visnet.errors import LockHeldError, VisnetError
from visnet.learning import learn
from visnet.learning.members import fit_arguments, fit_member, max_epochs, trainer_limits
from visnet.learning.state import RoundState
from visnet.training.preflight import epochs_done, training_ended

TINY_ARCH = dict(hidden_channels=16, num_layers=2, num_rbf=8, num_heads=2, lmax=1, cutoff=4.0, max_z=10)
ORACLE = "learn_oracles:counting_emt"
COMMITTEE = 2
FRAMES_PER_ROUND = 3
TRAIN_CONFIG = """\
trainer:
  max_epochs: 1
data:
  batch_size: 2
"""


def _start_model(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = randomize_biases(visnet.ViSNet(**TINY_ARCH), scale=0.2, seed=seed)
    return visnet.save_model(model, path, units={"energy": "eV", "length": "Å"}, elements=[1, 6, 8])


class CountingFit:
    """Runs ``visnet fit`` in this process and keeps each command line."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> int:
        self.calls.append(argv)
        return lightning_main(argv)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("learn")
    config = root / "train.yaml"
    config.write_text(TRAIN_CONFIG)
    reference = root / "reference.extxyz"
    visnet.labelling.label([_rattled(seed) for seed in range(2)], reference, calculator=ORACLE, progress=False)
    model = str(_start_model(root / "start.pt"))
    return {"model": model, "config": str(config), "out": str(root / "run"), "test": str(reference)}


def _rattled(seed: int):
    from visnet.structures.molecules import load_structure

    atoms = load_structure("ethanol")
    atoms.rattle(0.03, seed=seed)
    return atoms


def _options(setup: dict) -> dict:
    return dict(
        model=setup["model"],
        committee=COMMITTEE,
        md_steps=20,
        temperature=100.0,  # an untrained committee's MD stays within the blow-up guard's bounds longer
        check_interval=5,
        max_force_std=1e-4,  # every checked frame of an untrained committee is uncertain
        max_frames_per_round=FRAMES_PER_ROUND,
        train_config=setup["config"],
        calculator=ORACLE,
        test=setup["test"],
        out=setup["out"],
        progress=False,
    )


def _cli_args(setup: dict, rounds: int) -> list[str]:
    o = _options(setup)
    return [
        "learn",
        "ethanol",
        f"--model={o['model']}",
        f"--committee={COMMITTEE}",
        f"--rounds={rounds}",
        "--md-steps=20",
        "--temperature=100",
        "--check-interval=5",
        "--max-force-std=1e-4",
        f"--max-frames-per-round={FRAMES_PER_ROUND}",
        f"--train-config={o['train_config']}",
        f"--calculator={ORACLE}",
        f"--test={setup['test']}",
        f"--out={setup['out']}",
        "--no-progress",
    ]


@pytest.fixture(scope="module")
def two_runs(setup) -> dict:
    """``visnet learn --rounds 1`` on the command line, then ``learn(rounds=2)`` with counters."""
    assert cli_main(_cli_args(setup, rounds=1)) == 0
    first_run_files = {p: p.stat().st_mtime_ns for p in Path(setup["out"], "round_001").rglob("*") if p.is_file()}
    learn_oracles.COMPUTED.clear()
    fit = CountingFit()
    result = learn("ethanol", rounds=2, fit_runner=fit, **_options(setup))
    return {"result": result, "fit": fit, "computed": list(learn_oracles.COMPUTED), "first": first_run_files}


def test_two_rounds_make_a_committee_per_round(two_runs, setup):
    result = two_runs["result"]
    assert [s.index for s in result.rounds] == [0, 1, 2] and not result.converged
    for state in result.rounds:
        assert state.trained and len(state.members) == COMMITTEE
        assert all(Path(m).is_file() for m in state.members)
    assert result.members == [Path(m) for m in result.rounds[2].members]
    assert len({Path(m).parent.parent for m in result.members}) == 1  # one committee folder


def test_round_one_frames_are_in_round_two_training_set(two_runs, setup):
    out = Path(setup["out"])
    round1 = ase.io.read(out / "round_001" / "labels.extxyz", ":")
    train2 = ase.io.read(out / "round_002" / "train.extxyz", ":")
    assert len(round1) == FRAMES_PER_ROUND
    labelled = [len(ase.io.read(out / f"round_{i:03d}" / "labels.extxyz", ":")) for i in range(3)]
    assert len(train2) == sum(labelled) and labelled[:2] == [FRAMES_PER_ROUND] * 2  # all of rounds 0, 1 and 2
    for frame in round1:
        assert any(np.allclose(frame.positions, t.positions, atol=1e-6) for t in train2)
        assert frame.info["level_of_theory"] == ORACLE


def test_members_start_from_their_previous_round_self(two_runs, setup):
    calls = two_runs["fit"].calls
    starts = [argv[argv.index("--init") + 1] for argv in calls]
    previous = two_runs["result"].rounds[1].members
    assert starts == previous  # member k of round 2 from member k of round 1
    seeds = {argv[[a.startswith("--seed_everything") for a in argv].index(True)] for argv in calls}
    assert len(seeds) == COMMITTEE


def test_continued_run_redoes_nothing_finished(two_runs, setup):
    assert len(two_runs["fit"].calls) == COMMITTEE  # round 2's members only
    ethanol_atoms = 9
    added = two_runs["result"].rounds[2].labelled
    assert two_runs["computed"] == [ethanol_atoms] * added  # round 2's frames only
    changed = [p for p, t in two_runs["first"].items() if p.stat().st_mtime_ns != t]
    assert changed == []


def test_report_has_one_row_per_round(two_runs, setup):
    out = Path(setup["out"])
    with open(out / "report.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["round"] for r in rows] == ["0", "1", "2"]
    added = [int(r["frames_added"]) for r in rows]
    assert added[:2] == [FRAMES_PER_ROUND] * 2 and 1 <= added[2] <= FRAMES_PER_ROUND
    assert [int(r["total_frames"]) for r in rows] == list(np.cumsum(added))
    assert float(rows[1]["max_force_std"]) >= float(rows[1]["mean_force_std"]) > 1e-4
    assert (out / "report.png").stat().st_size > 0
    assert all(float(r["test_force_mae_meV_per_A"]) > 0 for r in rows)


def test_test_errors_are_those_of_the_committee_mean(two_runs, setup):
    """The reported force MAE equals the committee mean's, recomputed here (float64 calculator)."""
    state = two_runs["result"].rounds[2]
    calc = visnet.ViSNetCalculator(model=state.members, accel="eager")
    errors = []
    for reference in ase.io.read(setup["test"], ":"):
        atoms = reference.copy()
        atoms.calc = calc
        errors.append(np.abs(atoms.get_forces() - reference.get_forces()))
    assert state.test["force_mae"] == pytest.approx(np.mean(errors), rel=1e-9)


def test_rerun_of_a_finished_run_does_nothing(two_runs, setup):
    """Also with other labelling workers and the run folder spelled otherwise (neither changes a result)."""
    fit = CountingFit()
    learn_oracles.COMPUTED.clear()
    options = {**_options(setup), "workers": 2, "out": str(Path(setup["out"]).absolute()) + "/"}
    result = learn("ethanol", rounds=2, fit_runner=fit, **options)
    assert fit.calls == [] and learn_oracles.COMPUTED == []
    assert len(result.rounds) == 3


@pytest.mark.parametrize(
    ("change", "flag"),
    [({"temperature": 400.0}, "--temperature"), ({"max_frames_per_round": 5}, "--max-frames-per-round")],
)
def test_changed_options_are_refused(two_runs, setup, change, flag):
    with pytest.raises(VisnetError, match=flag):
        learn("ethanol", rounds=2, fit_runner=CountingFit(), **{**_options(setup), **change})


def test_changed_structure_is_refused(two_runs, setup):
    with pytest.raises(VisnetError, match="STRUCTURE"):
        learn("CCO", rounds=2, fit_runner=CountingFit(), **_options(setup))


def test_given_ensemble_converges_without_training(setup, tmp_path):
    """An ensemble folder is the round-0 committee as it is; a threshold above any force std
    harvests nothing, so round 1 converges: no label, no fit."""
    for k in range(COMMITTEE):
        _start_model(tmp_path / "ensemble" / f"member_{k}" / "model.pt")
    options = {**_options(setup), "model": str(tmp_path / "ensemble"), "out": str(tmp_path / "run")}
    options.update(max_force_std=1e3, test=None)
    fit = CountingFit()
    learn_oracles.COMPUTED.clear()
    result = learn("ethanol", rounds=3, fit_runner=fit, **options)
    assert result.converged and [s.index for s in result.rounds] == [0, 1]
    assert fit.calls == [] and learn_oracles.COMPUTED == []
    assert result.members == sorted((tmp_path / "ensemble").glob("member_*/model.pt"))
    assert result.rounds[1].uncertain_frames == 0 and result.rounds[1].checked_frames > 0


def test_kill_right_after_a_converged_round_is_saved_keeps_the_committee(setup, tmp_path, monkeypatch):
    """Killed just after the first save of a converged round's state: the rerun reads that state
    and must still return the committee (it was once saved without members)."""
    for k in range(COMMITTEE):
        _start_model(tmp_path / "ensemble" / f"member_{k}" / "model.pt")
    options = {**_options(setup), "model": str(tmp_path / "ensemble"), "out": str(tmp_path / "run")}
    options.update(max_force_std=1e3, test=None)
    save = RoundState.save

    def save_then_kill(self, out):
        path = save(self, out)
        if self.converged:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(RoundState, "save", save_then_kill)
    with pytest.raises(KeyboardInterrupt):
        learn("ethanol", rounds=3, fit_runner=_never_fit, **options)
    monkeypatch.setattr(RoundState, "save", save)
    result = learn("ethanol", rounds=3, fit_runner=_never_fit, **options)
    assert result.converged and result.members == sorted((tmp_path / "ensemble").glob("member_*/model.pt"))


def _never_fit(argv: list[str]) -> int:
    raise AssertionError(f"no fit may run: {argv}")


def test_kill_during_training_refits_only_the_unfinished_member(two_runs, setup):
    """As if killed while member 1 of round 2 trained, before its first checkpoint: its folder
    holds no model.pt and no checkpoint, the state says sampled and labelled. The rerun fits that
    member only (from the start) and labels nothing."""
    out = Path(setup["out"])
    state = RoundState.load(out, 2)
    state.done = ["sampled", "labelled"]
    state.save(out)
    unfinished = Path(state.members[1])
    unfinished.unlink()
    shutil.rmtree(unfinished.parent / "checkpoints")
    kept = Path(state.members[0]).stat().st_mtime_ns
    fit = CountingFit()
    learn_oracles.COMPUTED.clear()
    result = learn("ethanol", rounds=2, fit_runner=fit, **_options(setup))
    assert len(fit.calls) == 1 and str(unfinished.parent) in " ".join(fit.calls[0])
    assert learn_oracles.COMPUTED == [] and unfinished.is_file()
    assert Path(state.members[0]).stat().st_mtime_ns == kept
    assert result.rounds[2].has("evaluated")


def test_member_killed_before_its_export_is_exported_without_training(two_runs, setup):
    """Killed after member 0 of round 2 trained its last epoch, before it wrote model.pt: the
    rerun exports its best checkpoint (resuming would have nothing left to train) and fits nothing."""
    out = Path(setup["out"])
    state = RoundState.load(out, 2)
    state.done = ["sampled", "labelled"]
    state.save(out)
    model = Path(state.members[0])
    model.unlink()
    learn("ethanol", rounds=2, fit_runner=_never_fit, **_options(setup))
    assert visnet.load_model(model).metadata["checkpoint"] == str(model.parent / "checkpoints" / "best.ckpt")


# Fits that end before max_epochs: early stopping after epoch 2 (no validation loss improves on the
# first by 1e6), and a 1 s time limit (patience too large to stop first).
ENDED_EARLY = {
    "early stopping": "trainer:\n  max_epochs: 50\nearly_stopping:\n  patience: 1\n  min_delta: 1.0e6\n",
    "max_time": "trainer:\n  max_epochs: 100000\n  max_time: '00:00:00:01'\nearly_stopping:\n  patience: 100000\n",
}


@pytest.mark.parametrize("reason", list(ENDED_EARLY))
def test_member_that_stopped_before_max_epochs_is_exported_without_training(setup, tmp_path, reason):
    """A member whose fit ended by early stopping or trainer.max_time, killed before its export:
    its last.ckpt has trained fewer than max_epochs epochs, but records the stop (EarlyStopping's
    stopping_reason, the Timer's elapsed time); the rerun exports its best checkpoint instead of
    resuming (which trained one more epoch or step)."""
    config = tmp_path / "train.yaml"
    config.write_text(ENDED_EARLY[reason])
    run_dir = tmp_path / "member_0"
    argv = fit_arguments(setup["model"], Path(setup["test"]), 2, run_dir, 0, str(config))
    assert lightning_main(argv) == 0
    (run_dir / "model.pt").unlink()
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert epochs_done(last) < max_epochs(argv)
    assert training_ended(last, **trainer_limits(argv)) == reason
    model = fit_member(argv, run_dir, _never_fit)
    assert visnet.load_model(model).metadata["checkpoint"] == str(run_dir / "checkpoints" / "best.ckpt")


def test_trainer_limits_read_in_command_line_order(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("trainer:\n  max_epochs: 7\n  max_time: {minutes: 2}\n")
    argv = ["fit", "--trainer.max_epochs=60", "--trainer.max_time=00:00:05:00", "--config", str(config)]
    assert trainer_limits(argv) == {"max_epochs": 7, "max_steps": None, "max_time": timedelta(minutes=2)}
    later = [*argv, "--trainer.max_time={hours: 1}", "--trainer.max_steps", "9"]
    assert trainer_limits(later) == {"max_epochs": 7, "max_steps": 9, "max_time": timedelta(hours=1)}


def _step(checkpoint: Path) -> int:
    return torch.load(checkpoint, weights_only=True)["global_step"]


@pytest.mark.parametrize("stop", ["KillInSecondEpoch", "CtrlCInSecondEpoch"])
def test_killed_member_resumes_from_its_last_checkpoint(setup, tmp_path, stop):
    """Member 1 of round 1 stopped in its second of two epochs, as by SIGKILL (no model.pt) or
    Ctrl-C (model.pt of the first epoch, marked interrupted): the rerun continues it from its own
    last.ckpt (training starts at the step it had reached, and ends at the step of an uninterrupted
    member), and does not train member 0 again."""
    for k in range(COMMITTEE):  # members that disagree: round 1's MD finds uncertain frames
        _start_model(tmp_path / "ensemble" / f"member_{k}" / "model.pt", seed=k)
    config = tmp_path / "two_epochs.yaml"
    config.write_text(TRAIN_CONFIG.replace("max_epochs: 1", "max_epochs: 2"))
    options = {**_options(setup), "model": str(tmp_path / "ensemble"), "out": str(tmp_path / "run")}
    options.update(train_config=str(config), test=None)
    members = [tmp_path / "run" / "round_001" / "committee" / f"member_{k}" for k in range(COMMITTEE)]

    def stopping_fit(argv: list[str]) -> int:
        stopped = f"--trainer.default_root_dir={members[1]}" in argv
        return lightning_main([*argv, *([f"--trainer.callbacks+=learn_oracles.{stop}"] if stopped else [])])

    sigint = signal.getsignal(signal.SIGINT)  # Lightning ignores SIGINT after a KeyboardInterrupt
    try:
        with pytest.raises((learn_oracles.Killed, VisnetError)):
            learn("ethanol", rounds=1, fit_runner=stopping_fit, **options)
    finally:
        signal.signal(signal.SIGINT, sigint)
    last = members[1] / "checkpoints" / "last.ckpt"
    stopped_at = _step(last)
    if stop == "KillInSecondEpoch":
        assert not (members[1] / "model.pt").exists()
    else:
        assert visnet.load_model(members[1] / "model.pt").metadata["interrupted"] is True
    finished = (members[0] / "model.pt").stat().st_mtime_ns

    fit = CountingFit()
    learn_oracles.START_STEPS.clear()

    def recording_fit(argv: list[str]) -> int:
        return fit([*argv, "--trainer.callbacks+=learn_oracles.RecordStartStep"])

    result = learn("ethanol", rounds=1, fit_runner=recording_fit, **options)
    assert len(fit.calls) == 1 and f"--trainer.default_root_dir={members[1]}" in fit.calls[0]
    assert "--ckpt_path=last" in fit.calls[0]
    assert learn_oracles.START_STEPS == [stopped_at] and stopped_at > 0
    assert _step(last) == _step(members[0] / "checkpoints" / "last.ckpt") > stopped_at
    assert "interrupted" not in visnet.load_model(members[1] / "model.pt").metadata
    assert (members[0] / "model.pt").stat().st_mtime_ns == finished
    assert result.rounds[1].trained and result.members == [m / "model.pt" for m in members]


HOLD_LEARN_LOCK = """
import sys
from visnet.files.lock import FileLock
lock = FileLock(sys.argv[1])
assert lock.acquire()
print("held", flush=True)
sys.stdin.read()
"""


def test_a_second_learn_on_the_same_folder_is_refused(setup, tmp_path, capsys):
    """While another process holds the run folder, learn is refused at once in one line naming the
    folder and the holder, and writes nothing; once that process is killed (SIGKILL: its lock file
    stays, the kernel drops the lock) a rerun works and leaves no lock file."""
    for k in range(COMMITTEE):
        _start_model(tmp_path / "ensemble" / f"member_{k}" / "model.pt")
    out = tmp_path / "run"
    options = {**_options(setup), "model": str(tmp_path / "ensemble"), "out": str(out)}
    options.update(max_force_std=1e3, test=None)  # round 1 converges: no label, no fit
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LEARN_LOCK, str(out / "learn.lock")], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout.readline() == b"held\n"
        in_use = f"run folder {out} is in use by another visnet learn run (pid {holder.pid} on "
        with pytest.raises(LockHeldError, match=re.escape(in_use)):
            learn("ethanol", rounds=1, fit_runner=_never_fit, **options)
        args = ["learn", "ethanol", f"--model={options['model']}", f"--calculator={ORACLE}", f"--out={out}"]
        assert cli_main([*args, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"visnet: error: {in_use}") and err.count("\n") == 1, err
        assert sorted(p.name for p in out.iterdir()) == ["learn.lock"]
    finally:
        holder.kill()
        holder.wait()
    assert (out / "learn.lock").read_text().startswith(f"pid {holder.pid} on ")
    result = learn("ethanol", rounds=1, fit_runner=_never_fit, **options)
    assert result.converged and not (out / "learn.lock").exists()


def test_round_whose_labels_all_failed_fine_tunes_nothing(two_runs, setup, monkeypatch):
    """Round 2 labelled again (as if killed right after its MD) and every frame fails: nothing new
    to learn, so no fit: round 1's committee is kept and the report says so; the run goes on to
    round 3 (documented in visnet.learning.loop), which adds nothing either."""
    out = Path(setup["out"])
    state = RoundState.load(out, 2)
    assert state.selected > 0
    state.done = ["sampled"]
    state.save(out)
    (state.folder(out) / "labels.extxyz").unlink()
    monkeypatch.setattr(learn_oracles, "FAIL_ALL", True)
    fit = CountingFit()
    result = learn("ethanol", rounds=3, fit_runner=fit, **_options(setup))
    assert fit.calls == [] and [s.index for s in result.rounds] == [0, 1, 2, 3] and not result.converged
    failed, kept = result.rounds[2], result.rounds[1]
    assert failed.failed == failed.selected == state.selected and failed.labelled == 0
    assert not failed.trained and failed.members == kept.members and failed.total_frames == kept.total_frames
    # the same committee on the same frames (float64 calculator): the same test error
    assert failed.test["force_mae"] == pytest.approx(kept.test["force_mae"], rel=1e-12)
    assert result.rounds[3].members == kept.members and not result.rounds[3].trained
    with open(out / "report.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["fine_tuned"] for r in rows] == ["yes", "yes", "no", "no"]
    assert rows[2]["frames_added"] == "0" and int(rows[2]["label_failures"]) == state.selected


@pytest.mark.slow
def test_gfn2_xtb_labels_a_round(setup, tmp_path):
    """The default oracle: GFN2-xTB through tblite labels round 0's frames (tiny run)."""
    pytest.importorskip("tblite")
    options = {**_options(setup), "calculator": None, "test": None, "out": str(tmp_path / "run")}
    options.update(md_steps=10, check_interval=5)
    result = learn("ethanol", rounds=1, fit_runner=CountingFit(), **options)
    labels = ase.io.read(tmp_path / "run" / "round_000" / "labels.extxyz", ":")
    assert len(labels) == 3 and labels[0].info["level_of_theory"].startswith("GFN2-xTB")
    assert all(np.abs(f.get_forces()).max() < 20.0 for f in labels)  # eV/Å: an ethanol near equilibrium
    assert len(result.rounds) == 2
