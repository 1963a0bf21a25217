"""Compiled inference: ``torch.compile`` (inductor) of a ViSNet energy function, forces by AOTAutograd.

``compile_model(model)`` returns a module with the model's call and outputs. The neighbour list,
input checks, the isolated-atom table and the ``autograd.grad`` of ``visnet.model.forces`` stay
eager; the model's own energy function ``ViSNet.graph_energy`` (geometry → representation → head →
prior → reduce, the one ``ViSNet.energy`` runs) is compiled with dynamic numbers of atoms and
edges, and its backward (the forces and stress) is compiled with it by AOTAutograd. Every call
carries a ghost dimer (a structure of its own whose outputs are dropped), so no size is 0 or 1 —
the sizes ``torch.compile`` specialises on — and a single atom, isolated atoms or a 1-atom cell
reuse the graph of any other size. Compiling happens on the first call of each kind (molecules
or periodic cells, forces, stress, dtype; about a minute on one CPU core) and every compile's time
is printed; inductor's on-disk caches (``TORCHINDUCTOR_CACHE_DIR``, default
``~/.cache/visnet/inductor``) make a second process start faster. Systems whose edge activations
exceed ``visnet.model.representation.EDGE_CHUNK_BYTES`` get a graph of their own (a size guard)
in which each layer's edges go through the sliced-edge operator (``visnet.model.sliced_edges``,
its slice kernels compiled by inductor for one slice shape): memory grows with the system, not
with a whole (E, M, H) temporary per layer. Training is compiled by ``visnet.training``, not here.
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
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.fx.experimental import _config as shape_config

from visnet.model import ViSNet, validation
from visnet.model.call import differentiate, open_call
from visnet.model.geometry import graph_geometry
from visnet.model.interface import ModelForm, model_form
from visnet.neighbors import NeighborList

# Distances (Å) below which two distinct atoms are an input error (as ``ViSNet.energy``).
MIN_DISTANCE = 1e-4

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "visnet" / "inductor"


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
        backend: ``torch.compile`` backend ("inductor"; "eager" traces without compiling, for tests).
        verbose: print one line to stderr with the time of every compile (the first call of each
            kind: molecules or cells, forces, stress, dtype; any recompile too).

    Attributes:
        compiles: how many graphs ``torch.compile`` has built for this module's calls so far.
    """

    def __init__(
        self,
        model: ViSNet,
        dynamic: bool = True,
        mode: str | None = None,
        verbose: bool = True,
        backend: str = "inductor",
    ) -> None:
        super().__init__()
        self.model = model
        self.verbose = verbose
        # cpp_wrapper: inductor's launcher code in C++ instead of Python (less per-kernel overhead;
        # measured 0.92-0.96x the time of the default on the bundled aspirin). Modes set their own.
        options = None if mode or backend != "inductor" else {"cpp_wrapper": True}
        self._energy = torch.compile(
            model.graph_energy, dynamic=dynamic, mode=mode, fullgraph=True, options=options, backend=backend
        )
        self.compiles = 0
        self._kinds: set[str] = set()
        self._warned_large = False

    # ----------------------------------------------------------------- the model interface
    form: ClassVar[ModelForm] = "compiled"  # the energy function runs through torch.compile

    @property
    def cutoff(self) -> float:
        """Neighbour cutoff (Å) of the eager model."""
        return self.model.cutoff

    @property
    def max_z(self) -> int:
        """Element tables cover atomic numbers 1..max_z−1."""
        return self.model.max_z

    @property
    def elements(self) -> frozenset[int]:
        """Atomic numbers the model may be used for (the eager model's)."""
        return self.model.elements

    @property
    def metadata(self) -> dict[str, Any]:
        """The eager model's metadata (units, training data, ...); setting it sets the eager model's."""
        return self.model.metadata

    @metadata.setter
    def metadata(self, value: dict[str, Any]) -> None:
        self.model.metadata = value

    @property
    def hparams(self) -> dict[str, Any]:
        """The eager model's architecture (a copy)."""
        return self.model.hparams

    @property
    def output_key(self) -> str:
        """Name of the main output in the returned dict."""
        return self.model.output_key

    @property
    def predicts_energy(self) -> bool:
        """A potential energy (only such models may drive a calculator or MD)."""
        return self.model.predicts_energy

    @property
    def per_atom_output(self) -> bool:
        """The main output is per atom, not per molecule."""
        return self.model.per_atom_output

    @property
    def vector_output(self) -> bool:
        """The head's outputs are vectors ((G, 3) or (N, 3))."""
        return self.model.vector_output

    @property
    def derivative(self) -> bool:
        """Forces are computed when the call does not say."""
        return self.model.derivative

    @property
    def dtype(self) -> torch.dtype:
        """The eager model's dtype (its weights and the positions the call takes)."""
        return self.model.dtype

    @property
    def device(self) -> torch.device:
        """Where the weights are and the call runs."""
        return self.model.device

    @property
    def eager_model(self) -> ViSNet:
        """The ``ViSNet`` whose weights this module shares (what ``save_model`` writes)."""
        return self.model

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
        call = open_call(self, z, pos, batch, cell, pbc, compute_forces, compute_stress, neighbors, inputs_checked)
        neighbors = call.neighbors
        if not self_loops_last(neighbors, call.z.size(0)):
            return model(
                call.z, call.pos, call.batch, call.cell, call.pbc,
                compute_forces=call.forces, compute_stress=call.stress, neighbors=neighbors,
            )  # fmt: skip
        check_distances(call.pos, call.cell, call.batch, neighbors)
        graph = (neighbors.edge_index, neighbors.cell_offsets, self._isolated_table(), call.num_graphs)
        energy_fn = partial(self._compiled_energy, call.z, call.batch, graph)
        graphs_before, start = compiled_graph_count(), time.perf_counter()
        out = differentiate(call, energy_fn, model.output_key)
        if compiled_graph_count() > graphs_before:
            sliced = model.representation_model.edge_chunk(neighbors.edge_index.size(1), call.pos.dtype) is not None
            kind = (call.periodic, call.forces, call.stress, sliced, call.pos.dtype)
            self._report_compile(time.perf_counter() - start, *kind)
        return out

    def _report_compile(
        self, seconds: float, periodic: bool, forces: bool, stress: bool, sliced: bool, dtype: torch.dtype
    ) -> None:
        """Count a compile and print it (one line) when verbose; a second compile of one kind is a
        recompile (which the ghost dimer and shapes without duck-sizing should prevent) and says so.
        Large systems (``sliced``: edges in slices) get a graph of their own."""
        self.compiles += 1
        kind = ", ".join(
            ["periodic cells" if periodic else "molecules"]
            + ["forces"] * forces
            + ["stress"] * stress
            + ["edges in slices"] * sliced
            + [str(dtype).removeprefix("torch.")]
        )
        again = kind in self._kinds
        self._kinds.add(kind)
        if self.verbose:
            verb = "recompiled" if again else "compiled"
            print(
                f"visnet: {verb} the model for {kind} in {seconds:.1f} s (compile {self.compiles} of this model)",
                file=sys.stderr,
            )

    def _compiled_energy(
        self, z: Tensor, batch: Tensor, graph: tuple, pos: Tensor, cell: Tensor | None
    ) -> dict[str, Tensor]:
        """The compiled ``ViSNet.graph_energy`` with the isolated-atom table (max_z, 1) indexed by z,
        run with the parameters frozen: otherwise AOTAutograd's backward would also compute every
        weight gradient, which ``autograd.grad(energy, pos)`` discards (measured: ~half of the
        backward's matmuls, 0.83-0.85x the time of the call with them)."""
        edge_index, cell_offsets, table, num_graphs = graph
        num_atoms = z.size(0)
        z, pos, batch, edge_index, cell_offsets, cell = with_ghost_dimer(
            z, pos, batch, edge_index, cell_offsets, cell, num_graphs, self.model.cutoff
        )
        isolated = None if table is None else (table, z)
        # No duck sizing: a size equal to a static one (3 atoms and xyz, 2 structures and the
        # edge_index rows) would otherwise share its symbol and be specialised (NequIP's
        # fx_duck_shape(False); visnet.accel.export does the same).
        with frozen_parameters(self.model), shape_config.patch(use_duck_shape=False):
            out = self._energy(z, pos, cell, batch, edge_index, cell_offsets, num_graphs + 1, isolated)
        return {key: drop_ghost(value, num_atoms, num_graphs) for key, value in out.items()}

    def _isolated_table(self) -> Tensor | None:
        """(max_z, 1) head outputs of every element as a lone atom, computed eagerly (cached by the
        model while its parameters keep their versions); None when the model has no such reference."""
        model = self.model
        if not model.uses_isolated_atom_reference:
            return None
        with torch.no_grad():
            return model.isolated_atom_table()


def with_ghost_dimer(
    z: Tensor,
    pos: Tensor,
    batch: Tensor,
    edge_index: Tensor,
    cell_offsets: Tensor,
    cell: Tensor | None,
    num_graphs: int,
    cutoff: float,
    element: int | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """The graph with a ghost dimer appended as structure ``num_graphs``: two atoms of ``element``
    (default: the element of atom 0), half a cutoff apart, with their two edges before the
    self-loops (which stay last, in atom order) and a zero cell. Every size the compiled or exported
    graph sees is then ≥ 2 (atoms, pair edges, structures), so ``torch.compile`` never specialises on
    a size of 0 or 1 and the exported graph gets the sizes it was traced for.

    Shapes: z (N,), pos (N, 3) Å, batch (N,), edge_index (2, E), cell_offsets (E, 3), cell (G, 3, 3)
    or None -> the same with N + 2 atoms, E + 4 edges and G + 1 cells.
    """
    n = z.size(0)
    ghost_z = z[:1].expand(2) if element is None else z.new_full((2,), element)
    ghost_pos = pos.new_tensor([[0.0, 0.0, 0.0], [0.5 * cutoff, 0.0, 0.0]])
    loops = torch.arange(n + 2, device=z.device)
    pairs = torch.tensor([[n, n + 1], [n + 1, n]], device=z.device)
    head = edge_index[:, : edge_index.size(1) - n]
    head_offsets = cell_offsets[: edge_index.size(1) - n]
    return (
        torch.cat([z, ghost_z]),
        torch.cat([pos, ghost_pos]),
        torch.cat([batch, batch.new_full((2,), num_graphs)]),
        torch.cat([head, pairs, torch.stack([loops, loops])], dim=1),
        torch.cat([head_offsets, cell_offsets.new_zeros(2 + n + 2, 3)]),
        None if cell is None else torch.cat([cell, cell.new_zeros(1, 3, 3)]),
    )


def drop_ghost(value: Tensor, num_atoms: int, num_graphs: int) -> Tensor:
    """An output of the padded graph without the ghost dimer's rows: per-atom outputs have
    ``num_atoms`` + 2 rows, per-structure ones ``num_graphs`` + 1 (never equal: G ≤ N)."""
    if value.size(0) == num_graphs + 1:
        return value[:num_graphs]
    if value.size(0) == num_atoms + 2:
        return value[:num_atoms]
    raise RuntimeError(f"an output of {value.size(0)} rows is neither per atom nor per structure")


def compiled_graph_count() -> int:
    """Graphs ``torch.compile`` has built in this process (dynamo's counter; a call that raises it
    compiled or recompiled)."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


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
    compiler on CPU, no Triton on CUDA). An exported package (``load_exported``) is already
    compiled: it is returned as it is, with one warning saying so. The model is put in eval mode;
    weights are shared.

    Args:
        model: the eager model.
        dynamic: one graph for all numbers of atoms/edges.
        mode: ``torch.compile`` mode.
        cache_dir: inductor's on-disk cache (default ``$TORCHINDUCTOR_CACHE_DIR`` or
            ``~/.cache/visnet/inductor``).
        verbose: print every compile's time (one line each, to stderr).

    Raises:
        TypeError: ``model`` is not a ViSNet (it has no ``graph_energy`` to compile).
    """
    if not isinstance(model, ViSNet):
        form = model_form(model)
        if form == "exported":
            warnings.warn(
                f"visnet: {model.label} is already compiled (an exported package); compile ignored", stacklevel=2
            )
        if form is None:
            raise TypeError(f"compile_model takes a visnet.ViSNet, got {type(model).__name__}")
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
