"""Blow-up guard: stop MD with a clear message when the simulation leaves physical ground.

Attached as the *first* observer of an ASE integrator, so that it runs before the trajectory
writers of the same step: a bad frame is never written, and every frame on disk is good.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from ase.md.md import MolecularDynamics
from scipy.spatial import cKDTree

from visnet.neighbors import radius_graph
from visnet.units import PICOSECOND

__all__ = ["BlowUpGuard", "MDBlowUpError", "GuardLimits", "closest_pair"]


class MDBlowUpError(RuntimeError):
    """Raised by ``BlowUpGuard`` when a limit is crossed; the message names the culprit."""


@dataclass(frozen=True)
class GuardLimits:
    """Bounds of a healthy run.

    Attributes:
        max_force: largest allowed force on an atom, eV/Å (physical forces, constraints not applied).
        min_distance: smallest allowed distance between two atoms (or periodic images), Å.
        max_temperature: largest allowed instantaneous temperature, K.
    """

    max_force: float = 50.0
    min_distance: float = 0.5
    max_temperature: float = 2000.0

    @staticmethod
    def default_max_temperature(target: float) -> float:
        """Runaway bound for a run at ``target`` K: max(4 × target, target + 1000) K."""
        return max(4.0 * target, target + 1000.0)


class BlowUpGuard:
    """Checks forces, interatomic distances and temperature of ``atoms``.

    Args:
        atoms: the simulated system (its calculator results are read, never recomputed).
        limits: the bounds.
        dyn: the integrator, to report the step and time in messages (optional).
    """

    def __init__(self, atoms: Atoms, limits: GuardLimits, dyn: MolecularDynamics | None = None) -> None:
        self.atoms, self.limits, self.dyn = atoms, limits, dyn

    def __call__(self) -> None:
        """Observer entry point: raise ``MDBlowUpError`` if a limit is crossed."""
        problem = self.problem()
        if problem is not None:
            when = "the initial structure"
            if self.dyn is not None:
                when = f"step {self.dyn.nsteps} (t = {self.dyn.get_time() / PICOSECOND:.4f} ps)"
            raise MDBlowUpError(f"MD stopped at {when}: {problem}")

    def problem(self) -> str | None:
        """A description of the first limit crossed, or None when all is well."""
        return self._force_problem() or self._distance_problem() or self._temperature_problem()

    def _force_problem(self) -> str | None:
        forces = self.atoms.get_forces(apply_constraint=False)
        norms = np.linalg.norm(forces, axis=1)
        worst = int(np.argmax(norms))
        if not norms[worst] <= self.limits.max_force:  # also catches NaN
            symbol = self.atoms.get_chemical_symbols()[worst]
            bound = self.limits.max_force
            return f"force on atom {worst} ({symbol}) is {norms[worst]:.3g} eV/Å > max_force {bound} eV/Å"
        return None

    def _distance_problem(self) -> str | None:
        pair = closest_pair(self.atoms, self.limits.min_distance)
        if pair is None:
            return None
        i, j, d = pair
        symbols = self.atoms.get_chemical_symbols()
        return (
            f"atoms {i} ({symbols[i]}) and {j} ({symbols[j]}) are {d:.3f} Å apart "
            f"< min_distance {self.limits.min_distance} Å"
        )

    def _temperature_problem(self) -> str | None:
        temperature = self.atoms.get_temperature()
        if not temperature <= self.limits.max_temperature:
            return f"temperature {temperature:.0f} K > max_temperature {self.limits.max_temperature:.0f} K (runaway)"
        return None


def closest_pair(atoms: Atoms, bound: float) -> tuple[int, int, float] | None:
    """The closest pair of atoms (i, j, distance Å) if it is closer than ``bound`` Å, else None.

    Molecules: a k-d tree (O(N log N)); periodic systems: ``visnet.radius_graph`` with cutoff
    ``bound`` (periodic images count).
    """
    if len(atoms) < 2 and not atoms.pbc.any():
        return None
    if not atoms.pbc.any():
        dist, index = cKDTree(atoms.positions).query(atoms.positions, k=2)
        i = int(np.argmin(dist[:, 1]))
        d = float(dist[i, 1])
        return (i, int(index[i, 1]), d) if d < bound else None
    pos = torch.as_tensor(atoms.positions, dtype=torch.float64)
    cell = torch.as_tensor(np.asarray(atoms.cell), dtype=torch.float64)
    graph = radius_graph(pos, bound, cell=cell, pbc=torch.as_tensor(atoms.pbc, dtype=torch.bool))
    if graph.num_edges == 0:
        return None
    j, i = graph.edge_index
    dist = (pos[j] + graph.cell_offsets @ cell - pos[i]).norm(dim=1)
    k = int(torch.argmin(dist))
    return int(i[k]), int(j[k]), float(dist[k])
