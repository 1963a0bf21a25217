"""Compiled force training (``visnet fit --model.compile true``): energy and forces in one compiled graph.

NequIP's way: the forces are explicit operations of the graph. ``torch.compile`` traces
``ViSNet.graph_energy`` and the ``torch.autograd.grad(energy, pos, create_graph=True)`` of the
forces into one graph (dynamo's ``trace_autograd_ops``), so the loss's backward through energy and
forces is an ordinary backward that AOTAutograd compiles with it: no double backward through
``torch.compile`` is ever needed. The numbers of atoms, edges and structures are dynamic; every
batch gets the ghost dimer of ``visnet.accel.compile`` (no size 0 or 1 to specialise on). The
neighbour list, the input checks and the isolated-atom table (differentiable in the weights) stay
eager, as in the eager model's call.
"""

from __future__ import annotations

import sys
import time

import torch
from torch import Tensor
from torch.fx.experimental import _config as shape_config

from visnet.accel.compile import compile_available, compiled_graph_count, drop_ghost, self_loops_last, with_ghost_dimer
from visnet.model import ViSNet
from visnet.model.call import open_call
from visnet.model.scatter import scatter_sum


def _energy_and_forces(
    model: ViSNet,
    z: Tensor,
    pos: Tensor,
    cell: Tensor | None,
    batch: Tensor,
    edge_index: Tensor,
    cell_offsets: Tensor,
    num_graphs: int,
    isolated: tuple[Tensor, Tensor] | None,
) -> dict[str, Tensor]:
    """The model's outputs and "forces" (N, 3) = −dE/dpos with their graph (pos requires grad)."""
    out = model.graph_energy(z, pos, cell, batch, edge_index, cell_offsets, num_graphs, isolated)
    (grad,) = torch.autograd.grad(out[model.output_key].sum(), pos, create_graph=True)
    return {**out, "forces": -grad}


class CompiledTraining:
    """Energy + forces of a training batch through one compiled graph, differentiable in the weights.
    Not a module: it holds the trained model without adding its weights to a state dict twice.

    Args:
        model: the ``visnet.ViSNet`` being trained (shared, not copied).
        verbose: print one line to stderr with the time of each compile.
    """

    def __init__(self, model: ViSNet, verbose: bool = True) -> None:
        self.model = model
        self.verbose = verbose
        self._compiled = torch.compile(_energy_and_forces, dynamic=True, fullgraph=True)
        self.compiles = 0

    def __call__(
        self, z: Tensor, pos: Tensor, batch: Tensor, cell: Tensor | None = None, pbc: Tensor | None = None
    ) -> dict[str, Tensor]:
        """As ``model(z, pos, batch, cell, pbc, compute_forces=True)`` in training mode: z (N,), pos
        (N, 3) Å, batch (N,), cell (G, 3, 3) Å, pbc (G, 3) -> output key (G,), "forces" (N, 3), both
        with the graph that a loss's backward needs. Falls back to the eager model where the
        compiled graph's layout does not hold (self-loops not last)."""
        model = self.model
        call = open_call(model, z, pos, batch, cell, pbc, True, False, None, False)
        neighbors = call.neighbors
        if not self_loops_last(neighbors, call.z.size(0)) or model.reduce_op != "sum":
            return model(call.z, call.pos, call.batch, call.cell, call.pbc, compute_forces=True)
        num_atoms, num_graphs = call.z.size(0), call.num_graphs
        graph = with_ghost_dimer(
            call.z, call.pos.detach(), call.batch, neighbors.edge_index, neighbors.cell_offsets, call.cell,
            num_graphs, model.cutoff,
        )  # fmt: skip
        z, padded_pos, batch, edge_index, cell_offsets, padded_cell = graph
        padded_pos.requires_grad_(True)
        table, index = self._isolated_table(call.z)
        isolated = None if table is None else (table.detach(), torch.cat([index, index[:1].expand(2)]))
        before, start = compiled_graph_count(), time.perf_counter()
        with torch._dynamo.config.patch(trace_autograd_ops=True), shape_config.patch(use_duck_shape=False):
            out = self._compiled(
                model, z, padded_pos, padded_cell, batch, edge_index, cell_offsets, num_graphs + 1, isolated
            )
        if compiled_graph_count() > before:
            self.compiles += 1
            if self.verbose:
                print(f"visnet: compiled the training step in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        out = {key: drop_ghost(value, num_atoms, num_graphs) for key, value in out.items()}
        if table is not None:
            self._table_gradient(out, table, index, call.batch, num_graphs)
        return out

    def _isolated_table(self, z: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """The isolated-atom outputs (K, 1) of the batch's elements, differentiable in the weights
        (computed eagerly, as the eager model does in training), and each atom's row (N,)."""
        if not self.model.uses_isolated_atom_reference:
            return None, None
        elements, index = torch.unique(z, return_inverse=True)
        return self.model.isolated_atom_table(elements), index

    def _table_gradient(
        self, out: dict[str, Tensor], table: Tensor, index: Tensor, batch: Tensor, num_graphs: int
    ) -> None:
        """Add (table.detach() − table)[index] · std, zero in value, to the energies: the compiled graph
        took the table detached (autograd.grad inside it cannot reach a graph built outside), and
        this gives the weights the table's gradient. The table does not depend on positions, so the
        forces are unchanged."""
        key = self.model.output_key
        correction = ((table.detach() - table).index_select(0, index) * self.model.std).squeeze(-1)
        out[key] = out[key] + scatter_sum(correction, batch, num_graphs)
        out[f"atomic_{key}"] = out[f"atomic_{key}"] + correction


def compiled_training(model: ViSNet, verbose: bool = True) -> CompiledTraining | None:
    """A ``CompiledTraining`` of ``model``, or None (with one line on stderr) where compiling is
    impossible (no C++ compiler on CPU, no Triton on CUDA): training then runs eagerly."""
    ok, reason = compile_available(model.device)
    if not ok:
        print(f"visnet: cannot compile the training step ({reason}); training eagerly", file=sys.stderr)
        return None
    return CompiledTraining(model, verbose)
