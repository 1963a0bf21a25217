"""The opening and closing of a model call, written once for the eager, compiled and exported
forms: input checks → neighbour list → graph inputs (``open_call``), and the energy function run
under autograd for forces and stress (``differentiate``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from visnet.model import validation
from visnet.model.forces import energy_and_derivatives
from visnet.model.interface import AtomisticModel
from visnet.neighbors import NeighborList, radius_graph

__all__ = ["CallInputs", "differentiate", "open_call"]


@dataclass(frozen=True)
class CallInputs:
    """The checked inputs of one call and its radius graph.

    Attributes:
        z: (N,) int64 atomic numbers. pos: (N, 3) Å. batch: (N,) int64 structure index.
        cell: (G, 3, 3) Å when any structure is periodic, else None. pbc: (G, 3) bool, or None
            with ``cell``. num_graphs: G.
        neighbors: the radius graph with one self-loop per atom (as given, or built here).
        forces: compute forces. stress: compute stress and virial.
    """

    z: Tensor
    pos: Tensor
    batch: Tensor
    cell: Tensor | None
    pbc: Tensor | None
    num_graphs: int
    neighbors: NeighborList
    forces: bool
    stress: bool

    @property
    def periodic(self) -> bool:
        """Some structure has a periodic direction."""
        return self.cell is not None


def open_call(
    model: AtomisticModel,
    z: Tensor,
    pos: Tensor,
    batch: Tensor | None,
    cell: Tensor | None,
    pbc: Tensor | None,
    compute_forces: bool | None,
    compute_stress: bool,
    neighbors: NeighborList | None,
    inputs_checked: bool,
    *,
    compute_dtype: torch.dtype | None = None,
    autograd: bool = True,
) -> CallInputs:
    """The call's arguments (as ``AtomisticModel.__call__``) checked and normalised for ``model``,
    with the radius graph (cutoff ``model.cutoff``, self-loops last) built when not given.

    Args:
        compute_dtype: positions and cells are detached and converted to it before the neighbour
            list (the exported form computes in its own dtype); None: kept as given.
        autograd: derivatives are taken by autograd (not under ``torch.inference_mode()``).

    Raises:
        ValueError: bad inputs (naming the culprit), or stress without a periodic cell.
        RuntimeError: forces or stress by autograd requested under ``torch.inference_mode()``.
    """
    z, pos, batch, cell, pbc, num_graphs = validation.model_inputs(
        z, pos, batch, cell, pbc, model.max_z, model.dtype, model.device, not inputs_checked
    )
    forces = model.derivative if compute_forces is None else compute_forces
    periodic = cell is not None and bool(pbc.any())
    if compute_stress and not periodic:
        raise ValueError("stress requested but the structure has no periodic cell")
    if autograd and (forces or compute_stress) and torch.is_inference_mode_enabled():
        raise RuntimeError("forces need autograd: call the model outside torch.inference_mode()")
    cell, pbc = (cell, pbc) if periodic else (None, None)
    if compute_dtype is not None:
        pos = pos.detach().to(compute_dtype)
        cell = None if cell is None else cell.detach().to(compute_dtype)
    if neighbors is None:
        neighbors = radius_graph(pos.detach(), model.cutoff, batch, cell, pbc, self_loops=True)
    return CallInputs(z, pos, batch, cell, pbc, num_graphs, neighbors, forces, compute_stress)


def differentiate(
    call: CallInputs,
    energy_fn: Callable[[Tensor, Tensor | None], dict[str, Tensor]],
    key: str,
    create_graph: bool = False,
) -> dict[str, Tensor]:
    """``energy_fn(pos, cell)`` with the forces and stress ``call`` asks for, by autograd
    (``visnet.model.forces.energy_and_derivatives``); ``key`` names the energy (G,) in its dict."""
    derivatives = call.forces or call.stress
    with torch.set_grad_enabled(torch.is_grad_enabled() or derivatives):
        return energy_and_derivatives(
            energy_fn,
            call.pos,
            call.cell,
            call.batch,
            call.num_graphs,
            key=key,
            forces=call.forces,
            stress=call.stress,
            create_graph=create_graph,
        )
