"""Labelling oracles for the active-learning tests, named as ``learn_oracles:<factory>`` (this
folder is on ``sys.path`` under pytest). ``counting_emt`` records every frame it computes in ``COMPUTED``."""

from __future__ import annotations

from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

COMPUTED: list[int] = []  # number of atoms of each frame computed (in this process)


class CountingEMT(EMT):
    """ASE's EMT (it has H, C, N, O parameters) that counts its calculations."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        COMPUTED.append(len(atoms))


def counting_emt() -> Calculator:
    return CountingEMT()
