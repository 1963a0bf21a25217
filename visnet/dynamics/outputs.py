"""What an MD run leaves behind, written as it goes: ``.traj`` and extended-XYZ trajectories
(each frame flushed), an ``MDLogger`` log, a thermodynamics record for plots, a progress bar,
and the lock that keeps two runs from writing the same files (``OutputLock``)."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
from ase import Atoms
from ase.io import write
from ase.io.trajectory import Trajectory
from ase.md import MDLogger
from ase.md.md import MolecularDynamics
from tqdm.auto import tqdm

from visnet.dynamics.thermometer import kinetic_temperature
from visnet.errors import VisnetError
from visnet.files.lock import FileLock
from visnet.units import PICOSECOND

__all__ = [
    "OutputPaths",
    "OutputInUseError",
    "OutputLock",
    "Outputs",
    "ExtxyzWriter",
    "ThermoRecord",
    "ProgressBar",
    "attach_every",
    "attach_outputs",
]

_PS = PICOSECOND  # one picosecond in ASE time units


@dataclass(frozen=True)
class OutputPaths:
    """Files of one run, all named ``<directory>/<name>.<kind>``."""

    directory: Path
    name: str

    def _path(self, suffix: str) -> Path:
        return self.directory / f"{self.name}{suffix}"

    @property
    def traj(self) -> Path:
        return self._path(".traj")

    @property
    def extxyz(self) -> Path:
        return self._path(".extxyz")

    @property
    def log(self) -> Path:
        return self._path(".log")

    @property
    def energy_plot(self) -> Path:
        return self._path("_energy.png")

    @property
    def temperature_plot(self) -> Path:
        return self._path("_temperature.png")

    @property
    def uncertain(self) -> Path:
        """Frames above the committee's force-std threshold (``visnet.dynamics.uncertainty``)."""
        return self._path("_uncertain.extxyz")

    @property
    def uncertainty_log(self) -> Path:
        """Per-frame committee energy std and max force std."""
        return self._path("_uncertainty.log")

    @property
    def lock(self) -> Path:
        """Held by the run writing these files (``OutputLock``); removed when it ends."""
        return self._path(".lock")


class OutputInUseError(VisnetError):
    """Another run is writing the same output files (same output folder and name)."""


class OutputLock:
    """An exclusive lock on a run's output name, held from before the first file is opened to
    after the last is written.

    ``visnet.files.lock.FileLock`` on ``<directory>/<name>.lock``, taken without waiting: the kernel
    drops it when the holder exits, however it ends, so a lock is never left held by a dead run. The
    file records the holder (pid, host, start time) for the message of a refused run, and is removed
    on release. A file left behind by a killed run is taken over with a warning. No lock where
    ``fcntl`` is missing.

    Args:
        paths: the run's output files.

    Raises (on entering):
        OutputInUseError: another run holds the lock, named with its pid and host.
    """

    def __init__(self, paths: OutputPaths) -> None:
        self.paths = paths
        self._lock = FileLock(paths.lock)

    def __enter__(self) -> OutputLock:
        if not self._lock.acquire():
            raise OutputInUseError(
                f"{self.paths.directory / self.paths.name}.* is being written by another visnet md run "
                f"({self._lock.holder}; lock {self.paths.lock}): wait for it to end, or give another --name or "
                "--output-dir"
            )
        if self._lock.previous is not None:
            warnings.warn(
                f"{self.paths.lock} was left by an earlier run that did not end cleanly ({self._lock.previous}); "
                f"its outputs {self.paths.directory / self.paths.name}.* are overwritten",
                stacklevel=2,
            )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._lock.release()


class ExtxyzWriter:
    """Appends frames (positions, momenta, energy, forces, per-atom energies) to an extended-XYZ
    file and flushes after each, so the file is readable at any time."""

    def __init__(self, atoms: Atoms, path: Path) -> None:
        self.atoms = atoms
        self.handle: IO[str] = open(path, "w")  # noqa: SIM115 - closed by close()

    def __call__(self) -> None:
        frame = io.StringIO()
        write(frame, self.atoms, format="extxyz")
        self.handle.write(frame.getvalue())  # one write per frame: a killed run leaves whole frames
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


@dataclass
class ThermoRecord:
    """Time series for plots and drift checks.

    Attributes (lists of equal length):
        time: ps; potential, kinetic, total: eV (whole system, full-step velocities); temperature: K,
        the kinetic temperature the integrator samples canonically (``kinetic_temperature``: BAOAB's
        mid-step velocities, else ``atoms.get_temperature()``).
    """

    atoms: Atoms
    dyn: MolecularDynamics
    time: list[float] = field(default_factory=list)
    potential: list[float] = field(default_factory=list)
    kinetic: list[float] = field(default_factory=list)
    temperature: list[float] = field(default_factory=list)

    def __call__(self) -> None:
        self.time.append(self.dyn.get_time() / _PS)
        self.potential.append(self.atoms.get_potential_energy())
        self.kinetic.append(self.atoms.get_kinetic_energy())
        self.temperature.append(kinetic_temperature(self.atoms, self.dyn))

    @property
    def total(self) -> np.ndarray:
        """(frames,) total energy, eV."""
        return np.asarray(self.potential) + np.asarray(self.kinetic)

    def arrays(self) -> dict[str, np.ndarray]:
        """All series as arrays: time (ps), potential/kinetic/total (eV), temperature (K)."""
        return {
            "time": np.asarray(self.time),
            "potential": np.asarray(self.potential),
            "kinetic": np.asarray(self.kinetic),
            "total": self.total,
            "temperature": np.asarray(self.temperature),
        }


class ProgressBar:
    """tqdm bar over the MD steps with the current temperature and total energy."""

    def __init__(self, atoms: Atoms, dyn: MolecularDynamics, steps: int, every: int, enabled: bool) -> None:
        self.atoms, self.dyn, self.every = atoms, dyn, max(1, every)
        self.bar = tqdm(total=steps, unit="step", disable=not enabled, mininterval=0.5, dynamic_ncols=True)
        self._last = dyn.nsteps

    def __call__(self) -> None:
        self.bar.update(self.dyn.nsteps - self._last)
        self._last = self.dyn.nsteps
        if self.dyn.nsteps % self.every == 0:
            total = self.atoms.get_potential_energy() + self.atoms.get_kinetic_energy()
            self.bar.set_postfix_str(
                f"T={kinetic_temperature(self.atoms, self.dyn):.0f} K  E={total:.4f} eV", refresh=False
            )

    def close(self) -> None:
        self.bar.close()


@dataclass
class Outputs:
    """Everything attached to one run; ``close()`` releases the files."""

    paths: OutputPaths
    record: ThermoRecord
    closers: list = field(default_factory=list)
    monitor: Any = None  # the committee's UncertaintyMonitor, when there is one

    def close(self) -> None:
        for close in self.closers:
            close()
        self.closers.clear()


def attach_every(dyn: MolecularDynamics, function: Callable[[], Any], interval: int) -> None:
    """Call ``function`` every ``interval`` steps counted from now (ASE's ``attach`` counts from
    step 0: after an equilibration of a length that is no multiple of ``interval`` it would skip
    the first production frame and sample at offsets)."""
    start = dyn.nsteps

    def every() -> None:
        if (dyn.nsteps - start) % interval == 0:
            function()

    dyn.attach(every, interval=1)


def attach_outputs(
    dyn: MolecularDynamics,
    atoms: Atoms,
    paths: OutputPaths,
    steps: int,
    log_interval: int,
    traj_interval: int,
    progress: bool,
    stress: bool = False,
) -> Outputs:
    """Attach record, log, trajectories and progress bar to ``dyn`` (after any guard).

    Args:
        log_interval / traj_interval: steps between log lines / trajectory frames, counted from
            the current step (the start of production).
        stress: also log the stress (NPT).
    """
    paths.directory.mkdir(parents=True, exist_ok=True)
    record = ThermoRecord(atoms, dyn)
    attach_every(dyn, record, log_interval)
    logger = MDLogger(dyn, atoms, str(paths.log), header=True, stress=stress, mode="w")
    attach_every(dyn, logger, log_interval)
    traj = Trajectory(str(paths.traj), "w", atoms)
    attach_every(dyn, traj.write, traj_interval)
    extxyz = ExtxyzWriter(atoms, paths.extxyz)
    attach_every(dyn, extxyz, traj_interval)
    bar = ProgressBar(atoms, dyn, steps, log_interval, progress)
    dyn.attach(bar, interval=1)
    return Outputs(paths, record, [bar.close, logger.close, traj.close, extxyz.close])
