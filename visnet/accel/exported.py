"""Loading an exported package (``visnet export``): ``load_exported(path)`` -> ``ExportedViSNet``.

The module implements ``visnet.model.interface.AtomisticModel`` (the call and outputs of
``visnet.ViSNet``; cutoff, elements, metadata, dtype, device, ...; form "exported"), so the resolver
hands it to the calculator, ``visnet md`` and ``visnet.predict`` like a model file. Eager parts, as in
``visnet.accel.compile``: the call's opening (``visnet.model.call.open_call``: input checks, the
neighbour list, its self-loops moved last where needed), the coincident-atom check and the stress
from the virial.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch._inductor.package import load_package

from visnet.accel.compile import check_distances, self_loops_last, with_ghost_dimer
from visnet.accel.export import SLICED_MODEL, ExportError, check_package_path, exported_metadata
from visnet.devices import resolve_device, resolve_dtype
from visnet.io.package_safety import check_archive, private_copy, require_trusted
from visnet.model.call import open_call
from visnet.model.interface import ModelForm, declared_elements
from visnet.neighbors import NeighborList

__all__ = ["ExportedViSNet", "load_exported"]

# The exported graph needs at least this many atoms and non-self-loop edges (its shapes were
# traced with more); smaller inputs get a ghost dimer, a structure of its own whose outputs are dropped.
MIN_ATOMS = 2
MIN_PAIR_EDGES = 2


class ExportedViSNet(nn.Module):
    """An AOTInductor-compiled ViSNet energy model: same call and outputs as ``visnet.ViSNet``.

    Args:
        runner: the loaded package (``torch._inductor.aoti_load_package``).
        metadata: the package's metadata (``visnet.accel.export.exported_metadata``).
        label: the file it came from (for messages).
        dtype: the dtype callers pass positions in (default: the exported dtype). Computation
            always runs in the exported dtype; inputs and outputs are converted.
        sliced_runner: the package's program for large systems (edges in slices), run above
            ``metadata["sliced_above_edges"]`` edges; None (packages without one): ``runner`` always.
    """

    def __init__(
        self,
        runner: Any,
        metadata: dict[str, Any],
        label: str,
        dtype: torch.dtype | None = None,
        sliced_runner: Any = None,
    ) -> None:
        super().__init__()
        self.runner = runner
        self.sliced_runner = sliced_runner
        self.export_metadata = dict(metadata)
        self.label = label
        self.metadata = dict(metadata.get("model_metadata") or {})
        self.compute_dtype = _as_dtype(metadata["dtype"])
        self.io_dtype = dtype or self.compute_dtype
        self._device = torch.device(metadata["device"])

    # ----------------------------------------------------------------- the model's attributes
    @property
    def cutoff(self) -> float:
        """Neighbour cutoff (Å)."""
        return float(self.export_metadata["cutoff"])

    @property
    def max_z(self) -> int:
        """Element tables cover atomic numbers 1..max_z−1."""
        return int(self.export_metadata["max_z"])

    @property
    def hparams(self) -> dict[str, Any]:
        """The exported model's architecture (constructor arguments but the statistics; a copy)."""
        return dict(self.export_metadata["hyperparameters"])

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the positions the module takes (``io_dtype``)."""
        return self.io_dtype

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def elements(self) -> frozenset[int]:
        """Atomic numbers the model may be used for: its metadata "elements", else 1..max_z−1."""
        return declared_elements(self.metadata, self.max_z)

    # An exported graph is always an energy model's (``export_model`` refuses the others): a
    # potential reduced per molecule, with forces, whose outputs are not vectors.
    output_key = "energy"
    predicts_energy = True
    per_atom_output = False
    vector_output = False
    derivative = True
    form: ClassVar[ModelForm] = "exported"
    eager_model = None  # a package holds compiled code, not weights

    def for_inputs(self, device: torch.device | None, dtype: torch.dtype | None) -> ExportedViSNet:
        """This package (shared, not copied) taking positions in ``dtype`` on ``device``.

        Raises:
            ExportError: ``device`` is not the device it was exported for.
        """
        _check_device(self.export_metadata, device, self.label)
        return ExportedViSNet(
            self.runner, self.export_metadata, self.label, dtype or self.io_dtype, self.sliced_runner
        ).eval()

    def train(self, mode: bool = True) -> ExportedViSNet:
        if mode:
            raise RuntimeError("an exported ViSNet is for inference; train the eager model")
        return super().train(False)

    # ----------------------------------------------------------------- the call
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
        "energy" (G,), "atomic_energy" (N,), "forces" (N, 3), "stress"/"virial" (G, 3, 3) when
        requested. Forces are computed inside the compiled graph: no autograd is needed (also
        under ``torch.inference_mode()``); the outputs carry no graph."""
        call = open_call(
            self, z, pos, batch, cell, pbc, compute_forces, compute_stress, neighbors, inputs_checked,
            compute_dtype=self.compute_dtype, autograd=False,
        )  # fmt: skip
        neighbors = trailing_self_loops(call.neighbors, call.z.size(0))
        check_distances(call.pos, call.cell, call.batch, neighbors)
        graph_cell = call.cell if call.cell is not None else call.pos.new_zeros(call.num_graphs, 3, 3)
        energy, atomic, grad_forces, virial = self._run(call.z, call.pos, call.batch, neighbors, graph_cell)
        out = {"energy": energy, "atomic_energy": atomic}
        if call.forces:
            out["forces"] = grad_forces
        if call.stress:
            out["virial"] = virial
            out["stress"] = -virial / torch.linalg.det(graph_cell).abs().view(-1, 1, 1)
        return {k: v.to(self.io_dtype) for k, v in out.items()}

    def _run(
        self, z: Tensor, pos: Tensor, batch: Tensor, neighbors: NeighborList, cell: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The compiled graph on (z, pos, batch, graph, cell), padded with a ghost dimer when the
        structure is smaller than the graph's minimum sizes -> energy (G,), atomic (N,),
        forces (N, 3), virial (G, 3, 3)."""
        num_atoms, num_graphs = z.size(0), cell.size(0)
        edge_index, offsets = neighbors.edge_index, neighbors.cell_offsets
        if num_atoms < MIN_ATOMS or edge_index.size(1) - num_atoms < MIN_PAIR_EDGES:
            lightest = min(int(e) for e in self.export_metadata["elements"])
            z, pos, batch, edge_index, offsets, cell = with_ghost_dimer(
                z, pos, batch, edge_index, offsets, cell, num_graphs, self.cutoff, element=lightest
            )
        runner = self.runner
        if self.sliced_runner is not None and edge_index.size(1) > self.export_metadata["sliced_above_edges"]:
            runner = self.sliced_runner
        energy, atomic, forces, virial = runner(z, pos, batch, edge_index, offsets, cell)
        return energy[:num_graphs], atomic[:num_atoms], forces[:num_atoms], virial[:num_graphs]


def trailing_self_loops(neighbors: NeighborList, num_atoms: int) -> NeighborList:
    """The radius graph with its self-loops last, one per atom in atom order (the exported graph's
    layout; ``radius_graph(..., self_loops=True)`` builds it that way, other lists are reordered)."""
    if self_loops_last(neighbors, num_atoms):
        return neighbors
    edge_index, offsets = neighbors.edge_index, neighbors.cell_offsets
    loop = (edge_index[0] == edge_index[1]) & ~offsets.bool().any(dim=-1)
    atoms = torch.arange(num_atoms, device=edge_index.device)
    return NeighborList(
        torch.cat([edge_index[:, ~loop], torch.stack([atoms, atoms])], dim=1),
        torch.cat([offsets[~loop], offsets.new_zeros(num_atoms, 3)]),
    )


def load_exported(
    path: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    *,
    trust_package: bool = False,
) -> ExportedViSNet:
    """Load a package written by ``visnet export`` / ``visnet.accel.export.export_model``.

    A package holds native code that runs when it is loaded (see ``visnet.io.package_safety``): only
    packages built on this machine (their SHA-256 recorded at export) load by default.

    Args:
        path: the ``.pt2`` file.
        device: where to run (must be the device it was exported for; default: that device).
        dtype: the dtype of the positions callers will pass (default: the exported one; another
            one is converted, with a warning that it computes in the exported dtype).
        trust_package: load a package not built here (or changed since): run its code. Only for
            packages from a source you trust, like ``torch.load(weights_only=False)``.

    Raises:
        FileNotFoundError: no such file.
        ExportError: not a ViSNet package, written by another torch version, or for another device.
        UntrustedPackageError: not built here and ``trust_package`` is False (nothing loaded).
        PackageError: oversized contents, or a library that is truncated, for another machine or
            not an AOTInductor model (checked before it is opened).
    """
    label = str(path)
    with private_copy(check_package_path(path)) as (copy, digest):
        meta = exported_metadata(copy, label)
        if meta["torch_version"] != torch.__version__:
            raise ExportError(
                f"{label} was exported with torch {meta['torch_version']} but this is torch {torch.__version__}: "
                "AOTInductor packages load only with the torch that wrote them; export the model file again "
                f"(visnet export model.pt {Path(label).name})"
            )
        wanted = _check_device(meta, device, label)
        require_trusted(label, digest, trust_package)
        with zipfile.ZipFile(copy) as archive:
            check_archive(archive, label)
        dtype = _as_dtype(dtype)
        if dtype is not None and dtype != _as_dtype(meta["dtype"]):
            warnings.warn(
                f"{label} was exported in {meta['dtype']}: it computes in {meta['dtype']} (inputs and outputs "
                f"are converted to {str(dtype).removeprefix('torch.')}); export with --dtype to change that",
                stacklevel=2,
            )
        index = wanted.index if wanted.index is not None else -1
        runner = torch._inductor.aoti_load_package(os.fspath(copy), device_index=index)
        sliced = None
        if isinstance(meta.get("sliced_above_edges"), int):
            sliced = load_package(os.fspath(copy), SLICED_MODEL, device_index=index)
    return ExportedViSNet(runner, meta, label, dtype, sliced).eval()


def _check_device(meta: dict[str, Any], device: str | torch.device | None, label: str) -> torch.device:
    """The device to load on (default: the exported one); ExportError for another device type."""
    wanted = resolve_device(device) if device is not None else torch.device(meta["device"])
    if wanted.type != meta["device"]:
        raise ExportError(
            f"{label} was exported for {meta['device']} and cannot run on {wanted}: export it again with "
            f"--device {wanted.type}, or run it on {meta['device']}"
        )
    if wanted.type == "cuda" and not torch.cuda.is_available():
        raise ExportError(
            f"{label} was exported for cuda, and this torch has no CUDA device: export it with --device cpu"
        )
    return wanted


def _as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """None, a torch dtype or its name ("float32", "torch.float64") as a float torch dtype."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    return resolve_dtype(dtype)
