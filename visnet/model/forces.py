"""Forces, stress and virial by autograd through a symmetric strain (MACE ``compute_forces_virials``,
NequIP ``ForceStressOutput``).

The wrapper is a plain function of tensors around an energy function, so a compiled inference path
compiles exactly "energy function + this wrapper". The double-backward graph (``create_graph``) is
built only for training on forces.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

EnergyFunction = Callable[[Tensor, Tensor | None], dict[str, Tensor]]
GRAPH_FREED = (
    "the graph of this output was freed when the model computed its forces (eval mode builds no second "
    "derivative): call model.train() to keep it, or pass compute_forces=False and differentiate the energy yourself"
)


class _GraphFreed(torch.autograd.Function):
    """Identity whose backward explains that the graph behind it is gone (not torch's "backward
    through the graph a second time")."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        raise RuntimeError(GRAPH_FREED)


def symmetric_strain(pos: Tensor, cell: Tensor, batch: Tensor, num_graphs: int) -> tuple[Tensor, Tensor, Tensor]:
    """Apply a zero homogeneous strain ε = (D + Dᵀ)/2 to positions and cells, differentiable in D.

    Args:
        pos: (N, 3) Å positions. cell: (G, 3, 3) Å lattice vectors as rows. batch: (N,) graph index.

    Returns:
        strained pos (N, 3), strained cell (G, 3, 3) (numerically equal to the inputs) and the
        displacement D (G, 3, 3) that requires grad: dE/dD is the virial with a minus sign.
    """
    displacement = torch.zeros(num_graphs, 3, 3, dtype=pos.dtype, device=pos.device, requires_grad=True)
    strain = 0.5 * (displacement + displacement.transpose(1, 2))
    pos = pos + torch.einsum("ni,nij->nj", pos, strain.index_select(0, batch))
    cell = cell + torch.bmm(cell, strain)
    return pos, cell, displacement


def energy_and_derivatives(
    energy_fn: EnergyFunction,
    pos: Tensor,
    cell: Tensor | None,
    batch: Tensor,
    num_graphs: int,
    *,
    key: str = "energy",
    forces: bool = True,
    stress: bool = False,
    create_graph: bool = False,
) -> dict[str, Tensor]:
    """``energy_fn(pos, cell)`` plus "forces" (N, 3) = −dE/dpos, "virial" (G, 3, 3) = −dE/dε and
    "stress" (G, 3, 3) = (1/V) dE/dε, by one backward pass.

    Args:
        energy_fn: (pos (N, 3) Å, cell (G, 3, 3) Å or None) -> dict holding ``key`` (G,) energies.
        pos: (N, 3) positions. cell: (G, 3, 3) cells (required with ``stress``). batch: (N,) graph index.
        key: the energy entry of ``energy_fn``'s dict.
        forces, stress: which derivatives to return.
        create_graph: keep the graph of the derivatives (training on forces needs it; inference not).

    Returns:
        ``energy_fn``'s dict with the requested derivatives added (energy units per Å, per ε).
    """
    if not (forces or stress):
        return energy_fn(pos, cell)
    if forces and not pos.requires_grad:
        pos = pos.detach().requires_grad_(True)
    inputs = [pos] if forces else []
    if stress:
        if cell is None:
            raise ValueError("stress requested but no cell was given")
        strained_pos, strained_cell, displacement = symmetric_strain(pos, cell, batch, num_graphs)
        inputs.append(displacement)
        out = energy_fn(strained_pos, strained_cell)
    else:
        out = energy_fn(pos, cell)
    grads = torch.autograd.grad(
        out[key].sum(), inputs, create_graph=create_graph, retain_graph=create_graph, allow_unused=True
    )
    if not create_graph:  # the graph is freed: a later backward through the outputs gets a message
        out = {k: _GraphFreed.apply(v.detach().requires_grad_()) if v.requires_grad else v for k, v in out.items()}
    if forces:
        out["forces"] = -grads[0] if grads[0] is not None else torch.zeros_like(pos)
    if stress:
        volume = torch.linalg.det(strained_cell).abs().view(-1, 1, 1)
        out["virial"] = -grads[-1]
        out["stress"] = grads[-1] / volume
    return out
