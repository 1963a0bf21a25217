"""Gather mode of the LAMMPS coupling: every atom on one rank, the whole system evaluated there.

``whole_system`` is the one evaluation of a complete structure (the model's own forces and virial,
compiled or exported forms included); ``GatherMode`` collects every rank's atoms on rank 0 with
mpi4py, evaluates them there and hands each rank the forces on its own atoms. It is exact on any
number of ranks, but the model's work is not shared: it is the reference for, and the fallback of,
the domain mode (``visnet.integrations.lammps_domain``).

Everything here is in eV, Å, eV/Å (LAMMPS ``units metal``); ``ViSNetLammps`` converts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from visnet.inference.resolve import ResolvedModel
from visnet.integrations.lammps_box import LammpsBox

__all__ = ["Contribution", "GatherMode", "RankError", "raise_collectively", "whole_system"]


class RankError(ValueError):
    """A force evaluation failed on some rank (the message names the problem)."""


@dataclass(frozen=True)
class Contribution:
    """What one rank hands LAMMPS at one step.

    Attributes:
        energy: total potential energy of the whole system (eV), the same on every rank (LAMMPS adds
            a fix's energy after summing the ranks' pair energies).
        forces: (nlocal, 3) eV/Å on this rank's own atoms, in LAMMPS's local order.
        virial: (6,) eV, the global virial W = Σ r ⊗ f (xx yy zz xy xz yz), the same on every
            rank: measured with 2 ranks, LAMMPS 22 Jul 2025 reports the mean of the ranks' values
            set through ``fix_external_set_virial_global`` (a rank's share alone gave half).
    """

    energy: float
    forces: np.ndarray
    virial: np.ndarray


def voigt(virial: np.ndarray) -> np.ndarray:
    """(6,) xx yy zz xy xz yz of a (3, 3) tensor (symmetrised)."""
    v = 0.5 * (virial + virial.T)
    return np.array([v[0, 0], v[1, 1], v[2, 2], v[0, 1], v[0, 2], v[1, 2]])


def whole_system(
    engine: ResolvedModel, numbers: np.ndarray, pos: np.ndarray, box: LammpsBox
) -> tuple[float, np.ndarray, np.ndarray]:
    """Energy (eV), forces (N, 3) eV/Å and virial (3, 3) eV of one complete structure.

    Args:
        engine: the resolved model. numbers: (N,) atomic numbers. pos: (N, 3) Å positions.
        box: the LAMMPS box (its periodic directions are the structure's; none: a cluster).

    The virial is −dE/dε: the model's strain derivative in a periodic box, Σ_i f_i ⊗ r_i for a
    cluster (equal for a translation- and rotation-invariant energy).
    """
    units = engine.info.units
    periodic = bool(box.pbc.any())
    options = {"dtype": engine.dtype, "device": engine.device}
    z = torch.as_tensor(numbers, dtype=torch.long, device=engine.device)
    pos_t = torch.as_tensor(pos / units.length, **options)
    cell = torch.as_tensor(box.cell / units.length, **options) if periodic else None
    pbc = torch.as_tensor(box.pbc, device=engine.device) if periodic else None
    out = engine.model(z, pos_t, cell=cell, pbc=pbc, compute_forces=True, compute_stress=periodic)
    energy = float(out[engine.info.output_key].detach()[0]) * units.energy
    forces = out["forces"].detach().to("cpu", torch.float64).numpy() * units.force
    if periodic:
        virial = out["virial"].detach()[0].to("cpu", torch.float64).numpy() * units.energy
    else:
        virial = forces.T @ pos
    return energy, forces, virial


def raise_collectively(comm: Any, error: BaseException | None) -> None:
    """Raise ``RankError`` on every rank when ``error`` is set on any (a collective call: no rank
    waits forever for one that failed); the message is the first failing rank's."""
    message = None if error is None else f"{error}"
    messages = [message] if comm is None else comm.allgather(message)
    failed = [(rank, m) for rank, m in enumerate(messages) if m is not None]
    if failed:
        rank, text = failed[0]
        raise RankError(text if len(messages) == 1 else f"rank {rank}: {text}")


class GatherMode:
    """Whole-system evaluation on rank 0, forces scattered back to the atoms' ranks.

    Args:
        engine: the resolved model.
        type_numbers: (ntypes + 1,) atomic number of each LAMMPS atom type (index 0 unused).
    """

    def __init__(self, engine: ResolvedModel, type_numbers: np.ndarray) -> None:
        self.engine = engine
        self.type_numbers = type_numbers

    def __call__(self, comm: Any, tags: np.ndarray, types: np.ndarray, x: np.ndarray, box: LammpsBox) -> Contribution:
        """This rank's contribution for its local atoms: ``tags`` (n,) IDs, ``types`` (n,),
        ``x`` (n, 3) Å. Collective over ``comm`` (None: one rank)."""
        size = 1 if comm is None else comm.Get_size()
        parts = [(tags, types, x)] if size == 1 else comm.gather((tags, types, x), root=0)
        result, error = None, None
        if parts is not None:  # rank 0
            try:
                result = self._evaluate(parts, box)
            except Exception as err:  # noqa: BLE001 - reported on every rank below
                error = err
        raise_collectively(comm, error)
        if size == 1:
            energy, (forces,), virial = result
            return Contribution(energy, forces, voigt(virial))
        energy, pieces, virial = result if result is not None else (None, None, None)
        energy, virial = comm.bcast((energy, virial), root=0)
        forces = comm.scatter(pieces, root=0)
        return Contribution(energy, forces, voigt(virial))

    def _evaluate(
        self, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], box: LammpsBox
    ) -> tuple[float, list[np.ndarray], np.ndarray]:
        """Energy, the forces of each rank's atoms (in its order) and the virial of all ``parts``."""
        tags = np.concatenate([p[0] for p in parts])
        order = np.argsort(tags, kind="stable")
        types = np.concatenate([p[1] for p in parts])[order]
        pos = np.concatenate([p[2] for p in parts])[order]
        energy, forces, virial = whole_system(self.engine, self.type_numbers[types], pos, box)
        unsorted = np.empty_like(forces)
        unsorted[order] = forces
        bounds = np.cumsum([0] + [len(p[0]) for p in parts])
        return energy, [unsorted[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)], virial
