"""One frame's labels: energy (eV), forces (eV/Å) and, for a periodic cell, stress (eV/Å³, Voigt
order xx yy zz yz xz xy), or the one-line reason the calculation failed. The same function runs
in the parent (``workers=1``) and in each worker process, which builds its own calculator once."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError

from visnet.labelling.calculators import CalculatorFactory, TbliteFactory
from visnet.labelling.frames import Spin

__all__ = ["compute_frame", "init_worker", "worker_frame"]

REASON_CHARS = 300  # of a calculator's message kept in the failures file

_worker_calculator: Calculator | None = None
_worker_sets_spin = False


def compute_frame(index: int, atoms: Atoms, calc: Calculator, spin: Spin, sets_spin: bool) -> dict[str, Any]:
    """The journal record of frame ``index``: ``{"index", "energy", "forces", "stress"?}`` or
    ``{"index", "failure"}``. Exceptions of the calculator (SCF not converged, an unsupported
    element, any error) and non-finite results become failures; KeyboardInterrupt stops the run.

    Args:
        sets_spin: pass ``spin`` to the calculator's ``charge``/``multiplicity`` parameters (tblite);
            otherwise they are in ``atoms.info`` for calculators that read them there.
    """
    atoms = atoms.copy()
    atoms.info["charge"], atoms.info["multiplicity"] = spin.charge, spin.multiplicity
    try:
        if sets_spin:
            calc.set(charge=spin.charge, multiplicity=spin.multiplicity)
        atoms.calc = calc
        record: dict[str, Any] = {
            "index": index,
            "energy": float(atoms.get_potential_energy()),
            "forces": np.asarray(atoms.get_forces(), dtype=np.float64).tolist(),
        }
        stress = _stress(atoms) if atoms.pbc.all() else None
        if stress is not None:
            record["stress"] = stress
    except Exception as err:  # any calculator failure is the frame's, recorded with its reason
        return {"index": index, "failure": _reason(err)}
    values = [record["energy"], *np.ravel(record["forces"]), *(record.get("stress") or [])]
    if not np.isfinite(values).all():
        return {"index": index, "failure": "non-finite energy, forces or stress"}
    return record


def _stress(atoms: Atoms) -> list[float] | None:
    try:
        return np.asarray(atoms.get_stress(voigt=True), dtype=np.float64).tolist()
    except PropertyNotImplementedError:
        return None  # the calculator gives no stress: energies and forces only


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split()) or "(no message)"
    return f"{type(err).__name__}: {text[:REASON_CHARS]}"


def init_worker(factory: CalculatorFactory) -> None:
    """Worker start: one OpenMP thread (set before the calculator's library loads), one calculator."""
    global _worker_calculator, _worker_sets_spin
    os.environ["OMP_NUM_THREADS"] = "1"
    _worker_calculator = factory()
    _worker_sets_spin = isinstance(factory, TbliteFactory)


def worker_frame(index: int, atoms: Atoms, spin: Spin) -> dict[str, Any]:
    """``compute_frame`` with the worker's calculator (after ``init_worker``)."""
    assert _worker_calculator is not None, "init_worker was not run in this process"
    return compute_frame(index, atoms, _worker_calculator, spin, _worker_sets_spin)
