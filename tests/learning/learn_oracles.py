"""Labelling oracles and fit callbacks for the active-learning tests, named as
``learn_oracles:<factory>`` and ``learn_oracles.<Callback>`` (this folder is on ``sys.path`` under
pytest). ``counting_emt`` records every frame it computes in ``COMPUTED``, and fails every frame
while ``FAIL_ALL`` is set."""

from __future__ import annotations

import lightning.pytorch as pl
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

COMPUTED: list[int] = []  # number of atoms of each frame computed (in this process)
FAIL_ALL = False  # every calculation raises, as an SCF that never converges
START_STEPS: list[int] = []  # global step of each fit's first training step (RecordStartStep)


class CountingEMT(EMT):
    """ASE's EMT (it has H, C, N, O parameters) that counts its calculations."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        if FAIL_ALL:
            raise RuntimeError("SCF did not converge (learn_oracles.FAIL_ALL)")
        super().calculate(atoms, properties, system_changes)
        COMPUTED.append(len(atoms))


def counting_emt() -> Calculator:
    return CountingEMT()


class Killed(Exception):
    """A fit stopped as by SIGKILL: no export, no clean-up (raised by ``KillInSecondEpoch``)."""


class KillInSecondEpoch(pl.Callback):
    """Stops the fit as SIGKILL would (``Killed``: nothing exported) when its second epoch starts,
    after the first one's checkpoints are written."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 1:
            self.stop(trainer)

    def stop(self, trainer: pl.Trainer) -> None:
        raise Killed(f"killed at step {trainer.global_step}")


class CtrlCInSecondEpoch(KillInSecondEpoch):
    """Stops the fit as Ctrl-C does: Lightning exports the best model so far, marked interrupted."""

    def stop(self, trainer: pl.Trainer) -> None:
        raise KeyboardInterrupt


class RecordStartStep(pl.Callback):
    """Appends the global step training starts at (0, or a resumed checkpoint's) to ``START_STEPS``."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        START_STEPS.append(trainer.global_step)
