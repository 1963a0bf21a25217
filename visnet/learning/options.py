"""``LearnOptions``: the settings of one active-learning run, their checks, and the record of
them in ``<out>/options.json`` that a rerun must match (except ``RESUMABLE_CHANGES``: ``rounds``
may grow)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from visnet.errors import VisnetError
from visnet.files.atomic import atomic_write_text
from visnet.learning.members import check_train_config

__all__ = ["OPTIONS_FILE", "RESUMABLE_CHANGES", "LearnOptions", "check_same_run", "record_options"]

OPTIONS_FILE = "options.json"
# Options a rerun may change: more (or fewer) rounds continue the same run; the labelling workers
# change no result; ``out`` is the folder being continued, however it is spelled (``runs/l/``, an
# absolute path, a moved folder).
RESUMABLE_CHANGES = ("rounds", "workers", "out")


@dataclass(frozen=True)
class LearnOptions:
    """Settings of ``visnet learn`` (units: K, fs, eV/Å).

    Attributes:
        structure: the starting structure: a file, a bundled molecule name or a SMILES.
        model: the start model (bundled name, model file) or an ensemble run folder, which is
            then the round-0 committee as it is.
        committee: committee members (fine-tuned from ``model`` with seeds ``seed + k``); None:
            3, or the size of an ensemble folder given as ``model``.
        rounds: learning rounds after round 0 (committee MD, harvest, label, fine-tune), >= 1.
        md_steps: MD steps per round (Langevin at ``temperature``, ``timestep``).
        temperature: K. timestep: fs.
        max_force_std: a frame whose committee max force std exceeds this (eV/Å) is uncertain.
        max_frames_per_round: at most this many uncertain frames labelled per round (spread
            evenly in time over the harvest); also the number of round-0 frames.
        check_interval: MD steps between uncertainty checks (and between round-0 samples).
        train_config: a ``visnet fit`` YAML of training options (no architecture: it is the
            start model's; no ``checkpoint.dirpath`` or ``ckpt_path``: they are per member); None:
            ``visnet.learning.members.TRAINING_DEFAULTS`` only.
        test: an extended XYZ file of reference frames (energies eV, forces eV/Å): the committee's
            errors on it are reported every round.
        method: labelling method ("gfn2-xtb") when ``calculator`` is None.
        calculator: a ``"module:factory"`` ASE calculator that labels instead of xTB.
        workers: labelling worker processes.
        seed: seed of MD velocities and thermostats (``seed + round``) and of training (``seed + k``).
        out: the run folder.
    """

    structure: str
    model: str = "default"
    committee: int | None = None
    rounds: int = 3
    md_steps: int = 1000
    temperature: float = 300.0
    timestep: float = 0.5
    max_force_std: float = 0.1
    max_frames_per_round: int = 20
    check_interval: int = 10
    train_config: str | None = None
    test: str | None = None
    method: str = "gfn2-xtb"
    calculator: str | None = None
    workers: int = 1
    seed: int = 0
    out: str = "runs/learn"

    def check(self) -> None:
        """ValueError naming the first bad option (before any work)."""
        _whole("rounds", self.rounds, 1)
        _whole("md_steps", self.md_steps, 1)
        _whole("max_frames_per_round", self.max_frames_per_round, 1)
        _whole("check_interval", self.check_interval, 1)
        _whole("workers", self.workers, 1)
        if self.committee is not None:
            _whole("committee", self.committee, 2)
        for name in ("temperature", "timestep", "max_force_std"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("train_config", "test"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{name} file {path} does not exist")
        if self.train_config is not None:
            check_train_config(self.train_config)

    def recorded(self) -> dict[str, Any]:
        """The options as stored in ``options.json`` (paths as given)."""
        return asdict(self)


def _whole(name: str, value: Any, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}")


def record_options(options: LearnOptions) -> Path:
    """Write ``<out>/options.json`` (atomically) for a new run; keep it for a rerun."""
    path = Path(options.out) / OPTIONS_FILE
    if not path.exists():
        atomic_write_text(path, json.dumps(options.recorded(), indent=1) + "\n")
    return path


def check_same_run(options: LearnOptions) -> None:
    """Refuse to continue ``<out>`` with options other than those it was started with.

    Raises:
        VisnetError: naming the first differing option, its recorded value and the new one.
    """
    path = Path(options.out) / OPTIONS_FILE
    if not path.exists():
        return
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise VisnetError(f"{path} is unreadable ({err}); delete the run folder or choose another --out") from None
    given = options.recorded()
    for field in fields(LearnOptions):
        name = field.name
        if name in RESUMABLE_CHANGES or stored.get(name) == given[name]:
            continue
        flag = "STRUCTURE" if name == "structure" else "--" + name.replace("_", "-")
        raise VisnetError(
            f"{options.out} was started with {flag} {stored.get(name)!r}, not {given[name]!r}: rerun with the "
            "same options to continue it, or choose another --out"
        )
