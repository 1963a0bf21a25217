"""Calculator factories for the labelling tests, named as ``label_calculators:<factory>`` (this
folder is on ``sys.path`` under pytest; subprocesses get it through PYTHONPATH).

``counting_emt`` logs the ``info["tag"]`` of every frame it finishes to the file named by
``LABEL_TEST_LOG`` and, when ``LABEL_TEST_DIE_AT`` is set, kills its process (``os._exit``, no
clean-up, as a kill -9 would) when it starts the frame with that tag.
"""

from __future__ import annotations

import os

from ase.calculators.calculator import CalculationFailed, Calculator, all_changes
from ase.calculators.emt import EMT


class CountingEMT(EMT):
    """EMT that logs finished frames and can die on one."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        tag = atoms.info.get("tag")
        if os.environ.get("LABEL_TEST_DIE_AT") == str(tag):
            os._exit(17)
        super().calculate(atoms, properties, system_changes)
        with open(os.environ["LABEL_TEST_LOG"], "a") as log:
            log.write(f"{tag}\n")


class FailingEMT(EMT):
    """EMT that fails, like an SCF that does not converge, on frames with ``info["fail"]``."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        if atoms.info.get("fail"):
            raise CalculationFailed("SCF not converged in 250 cycles")
        super().calculate(atoms, properties, system_changes)


def counting_emt() -> Calculator:
    return CountingEMT()


def failing_emt() -> Calculator:
    return FailingEMT()


def unconverged_xtb() -> Calculator:
    """GFN2-xTB allowed two SCF cycles: every molecule fails to converge."""
    from tblite.ase import TBLite

    return TBLite(method="GFN2-xTB", verbosity=0, max_iterations=2)


NOT_CALLABLE = 42
