"""Domain mode of the LAMMPS coupling: each rank evaluates its own atoms plus a ghost shell.

With K ranks, LAMMPS gives every rank the atoms of its sub-domain ("owned") and copies of the
atoms within the ghost cutoff around it ("ghosts", periodic images included). An owned atom's
energy depends on the atoms within the model's receptive field: (num_layers + 1) × cutoff for
ViSNet, whose neighbour embedding is one message-passing step before the num_layers ViS-MP layers.
``ViSNetLammps`` makes the ghost cutoff at least that (pair cutoff = receptive field, plus the
neighbour skin). Each rank then

1. builds its cluster: owned atoms and the ghosts within the receptive field of their bounding
   box; in periodic directions that LAMMPS does not divide (processor grid 1 there) the positions
   are wrapped into the box and duplicate images dropped, and the model sees that direction as
   periodic (no ghost slab: the cluster is a periodic slab of the system, not a block);
2. evaluates the sum of its owned atoms' energies ("atomic_energy"), and its derivatives with
   respect to every position (owned and ghost) and to a homogeneous strain (the virial share). The
   radius graph is staged (``visnet.model.staged``): each stage of the model runs only on the edges
   whose centre is close enough, in hops, to an owned atom to matter for the owned energies (layer k
   of L within L − k hops), so the ghost shell costs the full work in its inner part only;
3. sums the forces on ghost atoms back to their owners by atom ID (mpi4py ``Allreduce`` of an
   (max ID + 1, 3) array: simple, O(N) per step) and the owned energies over ranks.

The results equal one rank's whole-system evaluation up to summation order. Everything is in eV,
Å, eV/Å (``units metal``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from visnet.inference.resolve import ResolvedModel
from visnet.integrations.lammps_box import LammpsBox
from visnet.integrations.lammps_gather import Contribution, raise_collectively, voigt
from visnet.model.forces import symmetric_strain
from visnet.model.staged import stage_neighbors
from visnet.neighbors import radius_graph

__all__ = ["CLUSTER_SEARCH", "DomainMode", "cluster", "receptive_field"]

# The neighbour search of a rank's cluster. On a slab of a long box (periodic across, open along),
# vesin, which "auto" picks above 512 atoms, took 0.26 s and 0.9 s on the 4,400- and 8,000-atom
# clusters of 360 and 720 Å ethanol boxes, the cell list 0.09 s and 0.24 s (1 thread, loaded
# machine); on the 43 Å cube's 7,300-atom cluster both took ~0.12 s.
CLUSTER_SEARCH = "cell_list"


def receptive_field(engine: ResolvedModel) -> float:
    """Distance (Å) beyond which atoms do not affect an atom's energy: (num_layers + 1) × cutoff.

    Raises:
        ValueError: the model is not differentiable in Python (an exported package), or does not
            sum per-atom energies (``reduce_op`` "mean"), so its energy cannot be divided by atom.
    """
    model = engine.model
    if model.form == "exported":
        raise ValueError(
            f"{engine.info.label}: mode='domain' needs a model file (an exported .pt2 package gives no "
            "per-atom energy gradients); use mode='gather' or the model's .pt file"
        )
    if model.hparams.get("reduce_op", "sum") != "sum":
        raise ValueError(
            f"{engine.info.label}: mode='domain' needs a model that sums atomic energies (reduce_op='sum')"
        )
    return (int(model.hparams["num_layers"]) + 1) * float(model.cutoff) * engine.info.units.length


def cluster(
    x: np.ndarray, tags: np.ndarray, nlocal: int, box: LammpsBox, procgrid: np.ndarray, reach: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The atoms one rank evaluates: its ``nlocal`` owned atoms (first, in order) and the ghosts
    within ``reach`` of their bounding box, wrapped in the periodic directions LAMMPS does not divide.

    Args:
        x: (nlocal + nghost, 3) Å positions, owned atoms first. tags: (nlocal + nghost,) atom IDs.
        box: the box. procgrid: (3,) ranks along each direction. reach: receptive field (Å).

    Returns:
        index (M,) into ``x`` of the kept atoms (the first ``nlocal`` are the owned ones), their
        positions (M, 3) Å, and the (3,) bool directions the model treats as periodic.
    """
    wrap = box.pbc & (np.asarray(procgrid) == 1)
    if nlocal == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 3)), wrap
    lo, hi = x[:nlocal].min(axis=0) - reach, x[:nlocal].max(axis=0) + reach
    near = np.all((x >= lo) & (x <= hi), axis=1)
    near[:nlocal] = True
    index = np.flatnonzero(near)
    pos = x[index]
    if not wrap.any():
        return index, pos, wrap
    frac = box.fractional(pos)
    image = np.floor(frac)
    frac[:, wrap] -= image[:, wrap]
    # The same image of an atom appears once per undivided periodic direction it was copied along;
    # its ID and its image along the divided periodic directions identify it (one integer key: a
    # 1-d np.unique, several times faster than over rows on the ~10^5 ghosts of a thin box).
    key = tags[index].astype(np.int64)
    divided = image[:, box.pbc & ~wrap].astype(np.int64)
    if divided.size:
        divided -= divided.min(axis=0)
        span = divided.max(axis=0) + 1
        key = key * int(np.prod(span)) + np.ravel_multi_index(tuple(divided.T), tuple(span))
    _, first = np.unique(key, return_index=True)
    first.sort()  # owned atoms precede their ghost copies, so np.unique's first occurrence keeps them
    return index[first], box.cartesian(frac[first]), wrap


class DomainMode:
    """Evaluates one rank's owned atoms with a ghost shell and returns its contribution.

    Args:
        engine: the resolved model (a ``ViSNet`` or its compiled form).
        type_numbers: (ntypes + 1,) atomic number of each LAMMPS atom type (index 0 unused).

    Raises:
        ValueError: the model cannot be divided by atom (``receptive_field``).
    """

    def __init__(self, engine: ResolvedModel, type_numbers: np.ndarray) -> None:
        self.engine = engine
        self.type_numbers = type_numbers
        self.reach = receptive_field(engine)
        self.mean = float(engine.model.eager_model.mean)  # added once per structure, not per atom

    def __call__(
        self,
        comm: Any,
        x: np.ndarray,
        tags: np.ndarray,
        types: np.ndarray,
        nlocal: int,
        box: LammpsBox,
        procgrid: np.ndarray,
    ) -> Contribution:
        """This rank's contribution: ``x`` (nlocal + nghost, 3) Å, ``tags``, ``types`` of owned and
        ghost atoms (owned first). Collective over ``comm`` (None: one rank)."""
        energy, forces, virial, error = 0.0, np.zeros((0, 3)), np.zeros((3, 3)), None
        try:
            index, pos, wrap = cluster(x, tags, nlocal, box, procgrid, self.reach)
            if nlocal:
                energy, forces, virial = self._owned(self.type_numbers[types[index]], pos, nlocal, box, wrap)
        except Exception as err:  # noqa: BLE001 - reported on every rank below
            error = err
        raise_collectively(comm, error)
        owned = forces[:nlocal] + self._ghost_forces(comm, tags[index[nlocal:]], forces[nlocal:], tags[:nlocal])
        total, virial = (energy, virial) if comm is None else comm.allreduce((energy, virial), op=_sum_pairs)
        return Contribution(total + self.mean, owned, voigt(virial))

    def _owned(
        self, numbers: np.ndarray, pos: np.ndarray, nlocal: int, box: LammpsBox, wrap: np.ndarray
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """Sum of the first ``nlocal`` atoms' energies (eV, without the model's mean), its forces
        (M, 3) eV/Å on every atom of the cluster and its virial (3, 3) eV (−dE/dε)."""
        engine, units = self.engine, self.engine.info.units
        options = {"dtype": engine.dtype, "device": engine.device}
        z = torch.as_tensor(numbers, dtype=torch.long, device=engine.device)
        pos_t = torch.as_tensor(pos / units.length, **options).requires_grad_(True)
        cell = torch.as_tensor(box.cell / units.length, **options).unsqueeze(0)
        batch = torch.zeros(len(numbers), dtype=torch.long, device=engine.device)
        periodic = bool(wrap.any())
        pbc = torch.as_tensor(wrap, device=engine.device).unsqueeze(0) if periodic else None
        graph = radius_graph(
            pos_t.detach(), engine.model.cutoff, batch, cell if periodic else None, pbc, True, CLUSTER_SEARCH
        )
        staged = stage_neighbors(graph, len(numbers), nlocal, int(engine.model.hparams["num_layers"]))
        with torch.enable_grad():
            strained, strained_cell, displacement = symmetric_strain(pos_t, cell, batch, 1)
            out = engine.model(
                z, strained, cell=strained_cell if periodic else None, pbc=pbc, compute_forces=False, neighbors=staged
            )
            atomic = out[f"atomic_{engine.info.output_key}"]
            owned = atomic[:nlocal].sum() - self.mean * nlocal / len(numbers)
            grad_pos, grad_strain = torch.autograd.grad(owned, (pos_t, displacement))
        forces = -grad_pos.to("cpu", torch.float64).numpy() * units.force
        virial = -grad_strain[0].to("cpu", torch.float64).numpy() * units.energy
        return float(owned.detach()) * units.energy, forces, virial

    @staticmethod
    def _ghost_forces(
        comm: Any, ghost_tags: np.ndarray, ghost_forces: np.ndarray, owned_tags: np.ndarray
    ) -> np.ndarray:
        """(nlocal, 3) eV/Å: the forces every rank computed on ghost copies of this rank's atoms."""
        top = int(max(ghost_tags.max(initial=0), owned_tags.max(initial=0)))
        parallel = comm is not None and comm.Get_size() > 1
        if parallel:
            from mpi4py import MPI  # comm is an mpi4py communicator, so mpi4py is there

            top = comm.allreduce(top, op=MPI.MAX)
        summed = np.zeros((top + 1, 3))
        np.add.at(summed, ghost_tags, ghost_forces)
        if parallel:
            comm.Allreduce(MPI.IN_PLACE, summed)
        return summed[owned_tags]


def _sum_pairs(a: tuple[float, np.ndarray], b: tuple[float, np.ndarray], _: object = None) -> tuple[float, np.ndarray]:
    """(energy, virial) + (energy, virial): the reduction of ``comm.allreduce`` over ranks."""
    return a[0] + b[0], a[1] + b[1]
