"""Compiled inference: ``torch.compile`` (inductor) of a ViSNet energy function, forces by AOTAutograd.

``compile_model(model)`` returns a module with the model's call and outputs. The neighbour list,
input checks, the isolated-atom table and the ``autograd.grad`` of ``visnet.model.forces`` stay
eager; the model's own energy function ``ViSNet.graph_energy`` (geometry → representation → head →
prior → reduce, the one ``ViSNet.energy`` runs) is compiled with dynamic numbers of atoms and edges, and its backward (the forces and stress) is compiled with it by AOTAutograd. Compiling
happens on the first call (about a minute on one CPU core) and its time is printed; inductor's
on-disk caches (``TORCHINDUCTOR_CACHE_DIR``, default ``~/.cache/visnet/inductor``) make a second
process start faster. Training is never compiled (forces training needs a double backward).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from visnet.model import validation
from visnet.model.forces import energy_and_derivatives
from visnet.model.geometry import graph_geometry
from visnet.neighbors import NeighborList, radius_graph

# Distances (Å) below which two distinct atoms are an input error (as ``ViSNet.energy``).
MIN_DISTANCE = 1e-4

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "visnet" / "inductor"

# The compiled graph never slices its edges (dynamo cannot trace the checkpointed slices), so
# systems whose edge activations (as ``ViSNetRepresentation.edge_chunk`` counts them) exceed this
# run eagerly, sliced. 2 GB counted is ~90k edges at 128 channels, lmax 1, float32; the periodic
# water box of 1,029 atoms (55k edges, 1.2 GB counted) peaked at 5.0 GB compiled.
COMPILED_EDGE_BYTES = 2e9


def cxx_compiler() -> str | None:
    """Path of the C++ compiler inductor uses on CPU (``$CXX``, default ``g++``), or None."""
    return shutil.which(os.environ.get("CXX", "g++"))


def compile_available(device: torch.device | str = "cpu") -> tuple[bool, str]:
    """(can compile, reason when not) for a device: CPU needs a C++ compiler, CUDA needs Triton."""
    device = torch.device(device)
    if device.type == "cpu" and cxx_compiler() is None:
        return False, f"no C++ compiler ({os.environ.get('CXX', 'g++')!r} not on PATH)"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return False, "Triton is not installed"
    return True, ""


def self_loops_last(neighbors: NeighborList, num_atoms: int) -> bool:
    """True when the last ``num_atoms`` edges are the self-loops (i, i) in atom order, with zero
    cell offsets, and no other edge is one: the layout ``radius_graph(..., self_loops=True)`` builds,
    which the compiled graph relies on. Other edge lists run eagerly."""
    edge_index, offsets = neighbors.edge_index, neighbors.cell_offsets
    if edge_index.size(1) < num_atoms:
        return False
    tail = edge_index[:, edge_index.size(1) - num_atoms :]
    atoms = torch.arange(num_atoms, device=edge_index.device)
    if not bool((tail == atoms).all()) or bool(offsets[edge_index.size(1) - num_atoms :].any()):
        return False
    head, head_offsets = edge_index[:, : edge_index.size(1) - num_atoms], offsets[: edge_index.size(1) - num_atoms]
    return not bool(((head[0] == head[1]) & ~head_offsets.bool().any(dim=-1)).any())


class CompiledViSNet(nn.Module):
    """A ViSNet whose energy function runs compiled; same call, outputs and attributes as the model.

    Args:
        model: a ``visnet.ViSNet`` (its weights are shared, not copied).
        dynamic: symbolic numbers of atoms and edges (True: one compiled graph for every size).
        mode: ``torch.compile`` mode (None: inductor's default).
        verbose: print the one-off compile time of each new input signature to stderr.
    """

    def __init__(self, model: nn.Module, dynamic: bool = True, mode: str | None = None, verbose: bool = True) -> None:
        super().__init__()
        self.model = model
        self.verbose = verbose
        # cpp_wrapper: inductor's launcher code in C++ instead of Python (less per-kernel overhead;
        # measured 0.92-0.96x the time of the default on the bundled aspirin). Modes set their own.
        options = None if mode else {"cpp_wrapper": True}
        self._energy = torch.compile(model.graph_energy, dynamic=dynamic, mode=mode, fullgraph=True, options=options)
        self._seen: set[tuple] = set()
        self._warned_large = False

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.model, name)

    def train(self, mode: bool = True) -> CompiledViSNet:
        if mode:
            raise RuntimeError("a compiled ViSNet is for inference; train the eager model")
        return super().train(False)

    def forward(
        self,
        z: Tensor,
        pos: Tensor,
        batch: Tensor | None = None,
        cell: Tensor | None = None,
        pbc: Tensor | None = None,
        *,
        compute_forces: bool | None = None,
        compute_stress: bool = False,
        neighbors: NeighborList | None = None,
        inputs_checked: bool = False,
    ) -> dict[str, Tensor]:
        """As ``ViSNet.forward``: z (N,), pos (N, 3) Å, batch (N,), cell (G, 3, 3) Å, pbc (G, 3) ->
        dict with the output key (G,), "forces" (N, 3), "stress"/"virial" (G, 3, 3) when requested."""
        model = self.model
        if model.training:
            raise RuntimeError("a compiled ViSNet is for inference: call model.eval() first")
        z, pos, batch, cell, pbc, num_graphs = validation.model_inputs(
            z, pos, batch, cell, pbc, model.max_z, model.dtype, model.device, not inputs_checked
        )
        forces = model.derivative if compute_forces is None else compute_forces
        periodic = cell is not None and bool(pbc.any())
        if compute_stress and not periodic:
            raise ValueError("stress requested but the structure has no periodic cell")
        if (forces or compute_stress) and torch.is_inference_mode_enabled():
            raise RuntimeError("forces need autograd: call the model outside torch.inference_mode()")
        if neighbors is None:
            neighbors = radius_graph(pos.detach(), model.cutoff, batch, cell, pbc, self_loops=True)
        if not self_loops_last(neighbors, z.size(0)) or self._too_large(neighbors, forces or compute_stress):
            return model(
                z, pos, batch, cell, pbc, compute_forces=forces, compute_stress=compute_stress, neighbors=neighbors
            )
        cell = cell if periodic else None
        check_distances(pos, cell, batch, neighbors)
        graph = (neighbors.edge_index, neighbors.cell_offsets, self._isolated_table(), num_graphs)
        energy_fn = partial(self._compiled_energy, z, batch, graph)
        kwargs = dict(key=model.output_key, forces=forces, stress=compute_stress, create_graph=False)
        signature = (forces, compute_stress, periodic, num_graphs > 1, pos.dtype, pos.device.type)
        start = time.perf_counter()
        with torch.set_grad_enabled(torch.is_grad_enabled() or forces or compute_stress):
            out = energy_and_derivatives(energy_fn, pos, cell, batch, num_graphs, **kwargs)
        if signature not in self._seen:
            self._seen.add(signature)
            if self.verbose:
                print(f"visnet: compiled the model in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        return out

    def _too_large(self, neighbors: NeighborList, derivatives: bool) -> bool:
        """True (with one warning per wrapper) when a forces call's unsliced edge activations would
        exceed ``COMPILED_EDGE_BYTES``: such systems run eagerly, where the model slices its edges."""
        if not derivatives:
            return False
        num_edges = neighbors.edge_index.size(1)
        representation = self.model.representation_model
        if representation.edge_chunk(num_edges, self.model.dtype, budget=COMPILED_EDGE_BYTES) is None:
            return False
        if not self._warned_large:
            self._warned_large = True
            warnings.warn(
                f"visnet: {num_edges} edges are too many for the compiled graph's memory (it does not slice "
                "its edges); running this system eagerly, sliced",
                stacklevel=3,
            )
        return True

    def _compiled_energy(
        self, z: Tensor, batch: Tensor, graph: tuple, pos: Tensor, cell: Tensor | None
    ) -> dict[str, Tensor]:
        """The compiled ``ViSNet.graph_energy`` with the isolated-atom table (max_z, 1) indexed by z,
        run with the parameters frozen: otherwise AOTAutograd's backward would also compute every
        weight gradient, which ``autograd.grad(energy, pos)`` discards (measured: ~half of the
        backward's matmuls, 0.83-0.85x the time of the call with them)."""
        edge_index, cell_offsets, table, num_graphs = graph
        isolated = None if table is None else (table, z)
        with frozen_parameters(self.model):
            return self._energy(z, pos, cell, batch, edge_index, cell_offsets, num_graphs, isolated)

    def _isolated_table(self) -> Tensor | None:
        """(max_z, 1) head outputs of every element as a lone atom, computed eagerly (cached by the
        model while its parameters keep their versions); None when the model has no such reference."""
        model = self.model
        if not model.uses_isolated_atom_reference:
            return None
        with torch.no_grad():
            return model.isolated_atom_table()


@contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """``requires_grad=False`` on the parameters of ``model`` that had it, restored on exit."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def check_distances(pos: Tensor, cell: Tensor | None, batch: Tensor, neighbors: NeighborList) -> None:
    """Raise ValueError for coincident atoms (the check ``ViSNet.energy`` makes, run eagerly before a
    compiled or exported graph). pos (N, 3) Å, cell (G, 3, 3) Å or None, batch (N,)."""
    with torch.no_grad():
        geometry = graph_geometry(pos, cell, batch, neighbors.edge_index, neighbors.cell_offsets, 1)
    validation.check_no_coincident_atoms(geometry.distances, neighbors.edge_index, geometry.self_loop, MIN_DISTANCE)


def compile_model(
    model: nn.Module,
    *,
    dynamic: bool = True,
    mode: str | None = None,
    cache_dir: str | Path | None = None,
    verbose: bool = True,
) -> nn.Module:
    """A compiled-inference version of ``model`` (a ``visnet.ViSNet``): same call and outputs.

    Falls back to the eager ``model`` with one warning where compiling is impossible (no C++
    compiler on CPU, no Triton on CUDA). The model is put in eval mode; weights are shared.

    Args:
        model: the eager model. dynamic: one graph for all numbers of atoms/edges.
        mode: ``torch.compile`` mode. cache_dir: inductor's on-disk cache (default
            ``$TORCHINDUCTOR_CACHE_DIR`` or ``~/.cache/visnet/inductor``).
        verbose: print the compile time on first use.
    """
    if isinstance(model, CompiledViSNet):
        return model
    ok, reason = compile_available(model.device)
    if not ok:
        warnings.warn(f"visnet: cannot compile the model ({reason}); running it eagerly", stacklevel=2)
        return model
    if cache_dir is not None:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir)
    else:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(DEFAULT_CACHE_DIR))
    return CompiledViSNet(model.eval(), dynamic=dynamic, mode=mode, verbose=verbose)
