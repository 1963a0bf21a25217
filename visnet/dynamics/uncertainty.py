"""Committee uncertainty during MD: the per-frame maximum force standard deviation, a log of it,
and harvesting of the frames above a threshold for labelling (active learning).

For a committee of M models with forces F_i^m, the force std of atom i is
``sqrt(sum_c std_m(F_ic^m)^2)`` (the norm of the per-component population std, eV/Å) and a frame's
uncertainty is its maximum over atoms — DP-GEN's ``max_devi_f``. A frame above ``max_force_std`` is
appended to ``<name>_uncertain.extxyz`` (flushed frame by frame) with positions, the committee mean
energy and forces (eV, eV/Å; ``atoms.get_potential_energy()`` / ``get_forces()`` on reading back),
``info["energy_std"]`` (eV), ``info["max_force_std"]`` (eV/Å), ``info["step"]``, ``info["time_ps"]``
and the per-atom ``arrays["forces_std"]`` (N, 3) eV/Å.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from ase.md.md import MolecularDynamics

from visnet.units import PICOSECOND

__all__ = ["UncertainFrameStop", "UncertaintyMonitor", "max_force_std", "uncertain_frame"]

_PS = PICOSECOND  # one picosecond in ASE time units
_HEADER = "# step  time[ps]  energy_std[eV]  max_force_std[eV/A]  flagged\n"


class UncertainFrameStop(RuntimeError):
    """Raised by ``UncertaintyMonitor(stop=True)`` at the first frame above the threshold."""


def max_force_std(forces_std: np.ndarray) -> float:
    """Largest per-atom force std (eV/Å) from the per-component committee std ``(N, 3)`` eV/Å."""
    return float(np.sqrt(np.square(forces_std).sum(axis=1)).max())


def uncertain_frame(atoms: Atoms, step: int, time_ps: float) -> Atoms:
    """A copy of ``atoms`` for labelling: positions, cell, committee mean energy/forces and their std.

    ``atoms.calc`` must be a committee ``ViSNetCalculator`` with current results (read, not recomputed).
    """
    calc = atoms.calc
    frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    forces_std = calc.get_property("forces_std", atoms)
    frame.info.update(
        step=int(step),
        time_ps=float(time_ps),
        energy_std=float(calc.get_property("energy_std", atoms)),
        max_force_std=max_force_std(forces_std),
    )
    frame.arrays["forces_std"] = np.array(forces_std, dtype=float)
    energy, forces = calc.get_property("energy", atoms), calc.get_property("forces", atoms)
    frame.calc = SinglePointCalculator(frame, energy=float(energy), forces=np.array(forces))
    return frame


@dataclass
class UncertaintyMonitor:
    """MD observer: logs the committee's uncertainty and harvests frames above ``threshold``.

    Args:
        atoms: the simulated system; its calculator must be a committee (``forces_std`` implemented).
        dyn: the integrator (step and time).
        log_path: whitespace table: step, time (ps), energy std (eV), max force std (eV/Å), flagged (0/1).
        harvest_path: extended-XYZ file of the flagged frames (created only when one is flagged).
        threshold: max force std above which a frame is flagged, eV/Å; None: log only.
        stop: raise ``UncertainFrameStop`` at the first flagged frame (after writing it).

    Attributes:
        time / values: (frames,) ps and max force std (eV/Å) of every checked frame.
        flagged_steps: MD steps of the harvested frames, in order.
    """

    atoms: Atoms
    dyn: MolecularDynamics
    log_path: Path
    harvest_path: Path
    threshold: float | None = None
    stop: bool = False
    time: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    flagged_steps: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if "forces_std" not in self.atoms.calc.implemented_properties:
            raise ValueError("the force-std monitor needs a committee of at least 2 models (repeat --model)")
        if self.threshold is not None and not self.threshold > 0:
            raise ValueError(f"max_force_std must be > 0 eV/Å, got {self.threshold}")
        self._log: IO[str] = open(self.log_path, "w")  # noqa: SIM115 - closed by close()
        self._log.write(_HEADER)
        self._harvest: IO[str] | None = None
        self.harvest_path.unlink(missing_ok=True)  # no stale frames from an earlier run of the same name

    def __call__(self) -> None:
        step, time_ps = self.dyn.nsteps, self.dyn.get_time() / _PS
        forces_std = self.atoms.calc.get_property("forces_std", self.atoms)
        value = max_force_std(forces_std)
        flagged = self.threshold is not None and value > self.threshold
        energy_std = float(self.atoms.calc.get_property("energy_std", self.atoms))
        self.time.append(time_ps)
        self.values.append(value)
        self._log.write(f"{step:8d} {time_ps:10.4f} {energy_std:14.6f} {value:14.6f} {int(flagged)}\n")
        self._log.flush()
        if flagged:
            self._write(uncertain_frame(self.atoms, step, time_ps))
            self.flagged_steps.append(step)
            if self.stop:
                raise UncertainFrameStop(
                    f"stopped at step {step} (t = {time_ps:.4f} ps): max force std {value:.3g} eV/Å > "
                    f"max_force_std {self.threshold} eV/Å; the frame is in {self.harvest_path}"
                )

    def _write(self, frame: Atoms) -> None:
        if self._harvest is None:
            self._harvest = open(self.harvest_path, "w")  # noqa: SIM115 - closed by close()
        text = io.StringIO()
        write(text, frame, format="extxyz")
        self._harvest.write(text.getvalue())  # one write per frame: a killed run leaves whole frames
        self._harvest.flush()

    def close(self) -> None:
        self._log.close()
        if self._harvest is not None:
            self._harvest.close()
