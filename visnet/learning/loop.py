"""``learn``: rounds of committee MD → harvest uncertain frames → label them → fine-tune the
committee on every frame labelled so far, until ``rounds`` rounds are done or a round's MD finds
no uncertain frame (the loop of DP-GEN and FLARE, with ``visnet md``, ``visnet label`` and
``visnet fit --init`` as its three steps).

Round 0 makes the first committee: the start model's MD is sampled, labelled, and each member
fine-tuned from the start model with its own seed (an ensemble run folder given as the start
model is the round-0 committee as it is). Round k ≥ 1 runs MD with round k−1's committee and
fine-tunes member j from its round k−1 self. A round whose labelling adds no frame (every
uncertain frame failed to label) has nothing new to learn: its committee is round k−1's, not
fine-tuned again (``fine_tuned`` no in the report), and the run goes on to the next round, whose
MD (another seed) samples new frames.

Run folder (``out``)::

    options.json               the options; a rerun must give the same ones (rounds, workers may change)
    round_000/ round_001/ ...  state.json, md/ (MD outputs), selected.extxyz (frames to label),
                               labels.extxyz, train.extxyz (all labels so far), committee/member_k/
    report.csv, report.png     one row per round (frames, force std, test errors)
    learn.lock                 held by the running ``learn`` (``visnet.files.lock``): a second run on
                               the same folder is refused at once; a killed run's lock blocks nothing

Killed and rerun with the same options, it continues at the first unfinished stage: no finished
MD, label or member fine-tune is done again, and a member killed mid-fit continues from its own
``last.ckpt`` (``visnet.learning.state``, ``visnet.learning.members``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from visnet.errors import LockHeldError, VisnetError
from visnet.files.lock import FileLock
from visnet.files.paths import check_output_folder
from visnet.inference.resolve import resolve_models
from visnet.labelling import label, make_calculator
from visnet.labelling.calculators import CalculatorFactory, level_of_theory
from visnet.learning.members import (
    FitRunner,
    fit_arguments,
    fit_member,
    given_committee,
    member_model,
    subprocess_fit,
    write_training_set,
)
from visnet.learning.options import LearnOptions, check_same_run, record_options
from visnet.learning.reference_errors import committee_errors, read_reference
from visnet.learning.report import write_report
from visnet.learning.sampling import Sample, committee_sample, initial_sample, read_frames, write_frames
from visnet.learning.state import RoundState
from visnet.structures.molecules import load_structure

__all__ = ["DEFAULT_COMMITTEE", "LearnResult", "learn"]

DEFAULT_COMMITTEE = 3
ROUND_SEED_STRIDE = 1000  # member k of round r trains with seed + 1000 r + k
LOCK_FILE = "learn.lock"  # in the run folder, held while a run works in it


@dataclass
class LearnResult:
    """What ``learn`` did.

    Attributes:
        out: the run folder. rounds: the state of every finished round, in order.
        members: the model files of the last committee (``ViSNetCalculator(model=members)``).
        converged: a round's MD found no uncertain frame. report / plot: ``report.csv`` / ``report.png``.
    """

    out: Path
    rounds: list[RoundState]
    members: list[Path]
    converged: bool
    report: Path
    plot: Path


@dataclass
class _Run:
    """Everything a round needs besides its own state."""

    options: LearnOptions
    atoms: Atoms
    factory: CalculatorFactory
    size: int
    given: list[Path] | None
    test: list[Atoms] | None
    runner: FitRunner
    log: Callable[[str], None]
    progress: bool

    @property
    def out(self) -> Path:
        return Path(self.options.out)


def learn(
    structure: str | os.PathLike,
    *,
    model: str | os.PathLike = "default",
    committee: int | None = None,
    rounds: int = 3,
    md_steps: int = 1000,
    temperature: float = 300.0,
    timestep: float = 0.5,
    max_force_std: float = 0.1,
    max_frames_per_round: int = 20,
    check_interval: int = 10,
    train_config: str | os.PathLike | None = None,
    test: str | os.PathLike | None = None,
    method: str = "gfn2-xtb",
    calculator: str | CalculatorFactory | None = None,
    workers: int = 1,
    seed: int = 0,
    out: str | os.PathLike = "runs/learn",
    fit_runner: FitRunner | None = None,
    progress: bool = True,
) -> LearnResult:
    """Improve a model where its committee is uncertain: see the module docstring for the loop.

    Args:
        structure: the starting structure of every round's MD: a file, a bundled molecule name or a SMILES.
        model: the start model (bundled name such as "default", a model file), or an ensemble run
            folder (``member_k/model.pt``), then the round-0 committee as it is.
        committee: members (>= 2; default 3, or the ensemble folder's size).
        rounds: learning rounds after round 0 (>= 1); a rerun with more rounds continues the run.
        md_steps: Langevin MD steps per round.
        temperature: MD temperature (K).
        timestep: MD timestep (fs).
        max_force_std: frames whose committee max force std exceeds this (eV/Å) are uncertain.
        max_frames_per_round: uncertain frames labelled per round at most (and round-0 frames).
        check_interval: MD steps between uncertainty checks (and round-0 samples).
        train_config: a ``visnet fit`` YAML of training options overriding
            ``visnet.learning.members.TRAINING_DEFAULTS`` (no architecture options).
        test: extended XYZ reference frames (energy eV, forces eV/Å): each round's committee errors on them.
        method: the labelling method of ``visnet.labelling.label`` (GFN2-xTB by default).
        calculator: instead of ``method``, an ASE calculator as ``"module:factory"`` or a
            zero-argument callable.
        workers: labelling processes.
        seed: MD seed of round r is ``seed + r``; member k of round r trains with ``seed + 1000 r + k``.
        out: the run folder.
        fit_runner: runs one ``visnet fit`` command line (a list of arguments) and returns its exit
            code; default: a ``python -m visnet.cli`` subprocess.
        progress: print a line per stage and show the labelling progress bar.

    Returns:
        A ``LearnResult``.

    Raises:
        ValueError / FileNotFoundError: an unreadable structure or test file, an element the start
            model lacks, a calculator spec that does not import, rounds < 1 or another bad option.
        VisnetError: ``out`` was started with other options (named), or a fine-tune failed.
        LockHeldError: another ``learn`` process is working in ``out`` (refused before any work).
    """
    factory = make_calculator(method, calculator)
    options = LearnOptions(
        structure=str(structure),
        model=str(model),
        committee=committee,
        rounds=rounds,
        md_steps=md_steps,
        temperature=temperature,
        timestep=timestep,
        max_force_std=max_force_std,
        max_frames_per_round=max_frames_per_round,
        check_interval=check_interval,
        train_config=None if train_config is None else str(train_config),
        test=None if test is None else str(test),
        method=method,
        calculator=None if calculator is None else level_of_theory(factory),
        workers=workers,
        seed=seed,
        out=str(out),
    )
    options.check()
    out = Path(options.out)
    check_output_folder(out, "run folder (--out)")
    with ExitStack() as stack:
        locked = out.is_dir()  # a run may be working in it: refused before anything else
        if locked:
            stack.enter_context(_run_folder_lock(out))
        run = _prepare(options, factory, fit_runner or subprocess_fit, progress)
        if not locked:  # locked once the inputs are checked: bad input leaves no folder behind
            stack.enter_context(_run_folder_lock(out))
        check_same_run(options)
        record_options(options)
        return _rounds(run)


@contextmanager
def _run_folder_lock(out: Path) -> Iterator[None]:
    """Hold ``<out>/learn.lock`` (``visnet.files.lock.FileLock``, creating ``out``) for the block.

    Raises:
        LockHeldError: another process holds it (the message names ``out`` and the holder).
    """
    lock = FileLock(out / LOCK_FILE)
    if not lock.acquire():
        raise LockHeldError(
            lock.path,
            lock.holder,
            f"run folder {out} is in use by another visnet learn run ({lock.holder}; lock {lock.path}): "
            "wait for it to end, or give another --out",
        )
    try:
        yield
    finally:
        lock.release()


def _prepare(options: LearnOptions, factory: CalculatorFactory, runner: FitRunner, progress: bool) -> _Run:
    """Every check of the inputs before any work and any write: structure, start model and its
    elements, test file (``options`` and the run folder are checked by the caller)."""
    atoms = load_structure(options.structure, seed=options.seed)
    given = given_committee(options.model)
    size = _committee_size(options, given)
    _check_elements(atoms, options.model if given is None else given)
    test = None if options.test is None else read_reference(options.test)
    log = print if progress else _quiet
    return _Run(options, atoms, factory, size, given, test, runner, log, progress)


def _quiet(message: str) -> None:
    del message


def _committee_size(options: LearnOptions, given: list[Path] | None) -> int:
    if given is None:
        return options.committee or DEFAULT_COMMITTEE
    if len(given) < 2:
        raise ValueError(f"model {options.model} is a run folder of one model: a committee needs at least 2 members")
    if options.committee is not None and options.committee != len(given):
        raise ValueError(
            f"committee {options.committee} contradicts model {options.model}, an ensemble of {len(given)} members"
        )
    return len(given)


def _check_elements(atoms: Atoms, model: str | list[Path]) -> None:
    """ValueError naming an element of ``atoms`` that the start model (or a member) lacks."""
    spec = model if isinstance(model, str) else [str(m) for m in model]
    for item in resolve_models(spec, device="cpu", accel="eager", purpose="active learning (--model)"):
        missing = sorted(set(atoms.numbers.tolist()) - set(item.info.elements))
        if missing:
            names = ", ".join(chemical_symbols[z] for z in missing)
            known = ", ".join(chemical_symbols[z] for z in sorted(item.info.elements))
            raise ValueError(
                f"the structure holds {names}, which the start model {item.info.label} was not trained on "
                f"(its elements: {known}); fine-tuning cannot add an element"
            )


def _rounds(run: _Run) -> LearnResult:
    states: list[RoundState] = []
    report = plot = Path()
    for index in range(run.options.rounds + 1):
        state = RoundState.load(run.out, index)
        if not state.converged:
            _round(run, state, states[-1] if states else None)
        states.append(state)
        report, plot = write_report(run.out, states)
        if state.converged:
            run.log(f"round {index}: no frame above max_force_std {run.options.max_force_std} eV/Å: converged")
            break
    last = states[-1]
    return LearnResult(run.out, states, [Path(m) for m in last.members], last.converged, report, plot)


def _round(run: _Run, state: RoundState, previous: RoundState | None) -> None:
    """The unfinished stages of one round."""
    folder = state.folder(run.out)
    if not state.has("sampled"):
        _sample(run, state, previous, folder)
    if state.converged:
        return
    if not state.has("labelled"):
        _label(run, state, folder)
    if not state.has("trained"):
        _train(run, state, previous, folder)
    if not state.has("evaluated"):
        if run.test is not None:
            state.test = committee_errors(state.members, run.test)
            run.log(f"round {state.index}: test force MAE {state.test['force_mae'] * 1000:.1f} meV/Å")
        state.finish("evaluated", run.out)


def _sample(run: _Run, state: RoundState, previous: RoundState | None, folder: Path) -> None:
    options = run.options
    if previous is None:
        sample = Sample([], 0, None) if run.given else initial_sample(options, run.atoms, options.model, folder / "md")
    else:
        members = [Path(m) for m in previous.members]
        known = [f for i in range(state.index) for f in read_frames(RoundState(i).folder(run.out) / "selected.extxyz")]
        sample = committee_sample(options, run.atoms, members, folder / "md", options.seed + state.index, known)
        state.converged = sample.uncertain == 0
        if state.converged:  # the committee is kept: recorded with "sampled", so a kill right after loses nothing
            state.members, state.total_frames = list(previous.members), previous.total_frames
    write_frames(folder / "selected.extxyz", sample.frames)
    state.md_steps_done, state.md_message = sample.steps_done, sample.message
    state.checked_frames, state.uncertain_frames, state.selected = sample.checked, sample.uncertain, len(sample.frames)
    if sample.force_std is not None and len(sample.force_std):
        state.max_force_std, state.mean_force_std = float(np.max(sample.force_std)), float(np.mean(sample.force_std))
    run.log(
        f"round {state.index}: MD {sample.steps_done} steps, {sample.uncertain} uncertain of {sample.checked} "
        f"checked frames, {len(sample.frames)} to label" + (f" ({sample.message})" if sample.message else "")
    )
    state.finish("sampled", run.out)


def _label(run: _Run, state: RoundState, folder: Path) -> None:
    if state.selected:
        options = run.options
        report = label(
            folder / "selected.extxyz",
            folder / "labels.extxyz",
            calculator=run.factory,
            workers=options.workers,
            progress=run.progress,
        )
        state.failed = len(report.failed)
        state.labelled = state.selected - state.failed
        run.log(f"round {state.index}: {report.summary()}")
    state.finish("labelled", run.out)


def _train(run: _Run, state: RoundState, previous: RoundState | None, folder: Path) -> None:
    labels = [RoundState(i).folder(run.out) / "labels.extxyz" for i in range(state.index + 1)]
    data = folder / "train.extxyz"
    state.total_frames = write_training_set(data, labels)
    state.trained = False  # until the members below are fine-tuned
    if previous is None and run.given:
        state.members = [str(m) for m in run.given]
    elif previous is not None and state.labelled == 0:
        state.members = list(previous.members)
        run.log(
            f"round {state.index}: no frame added ({state.failed} of {state.selected} failed to label): "
            "nothing new to learn, committee kept"
        )
    elif state.total_frames < 2:
        if previous is None:
            raise VisnetError(
                f"round 0 labelled {state.total_frames} frame(s): fine-tuning needs at least 2; raise "
                "--md-steps or --max-frames-per-round, or lower --check-interval"
            )
        state.members = list(previous.members)
        run.log(f"round {state.index}: {state.total_frames} labelled frame(s): too few to fine-tune, committee kept")
    else:
        state.members = [str(_fit(run, state, previous, folder, data, k)) for k in range(run.size)]
        state.trained = True
    state.finish("trained", run.out)


def _fit(run: _Run, state: RoundState, previous: RoundState | None, folder: Path, data: Path, k: int) -> Path:
    options = run.options
    start = options.model if previous is None else previous.members[k]
    run_dir = member_model(folder, k).parent
    seed = options.seed + ROUND_SEED_STRIDE * state.index + k
    argv = fit_arguments(start, data, state.total_frames, run_dir, seed, options.train_config)
    run.log(f"round {state.index}: fine-tuning member {k + 1}/{run.size} on {state.total_frames} frames")
    return fit_member(argv, run_dir, run.runner)
