"""Exported artifacts: ``torch.export`` + AOTInductor of a ViSNet's energy, forces and virial.

``export_model(model, "model.pt2")`` writes a PT2 package (NequIP's ``nequip-compile --mode
aotinductor`` route) whose one compiled graph maps a radius graph to energies, per-atom energies,
forces and virials, with dynamic numbers of atoms, edges and structures; the model's metadata
(cutoff, elements, units, dtype, device, hyperparameters, torch version) travels inside it.
``load_exported("model.pt2")`` gives a module with the model's call and outputs, so the calculator,
``visnet md --model model.pt2`` and ``visnet.predict(..., model="model.pt2")`` load it like a model
file (``visnet.inference.resolve.prepare_model`` recognises ``.pt2``). The neighbour list and the input
checks stay eager in the loaded module, as in ``visnet.accel.compile``.

How the graph is built: (1) ``torch.export`` of ``ViSNet.graph_energy`` (the model's own energy
function; the isolated-atom table is a constant of the graph), (2) ``make_fx`` of energy + the
autograd wrapper of ``visnet.model.forces`` around that exported energy, which unrolls the
backward into plain ops, (3) ``torch.export`` of that graph with dynamic shapes, (4) AOTInductor.
A molecule passes a zero cell: its periodic shifts and strain vanish, so one graph serves molecules
and periodic systems (stress included). The package holds two such programs: "model", the whole
graph fused, and "sliced" (``SLICED_MODEL``), in which every layer's edge work is the sliced-edge
operator of ``visnet.model.sliced_edges`` (one node per layer and direction, calling back into
Python: the package then needs ``visnet`` imported, as ``load_exported`` does); the loader runs
"sliced" for systems above ``sliced_above_edges`` edges, so memory stays bounded at any size.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.fx.experimental.proxy_tensor import make_fx

from visnet.accel.compile import compile_available
from visnet.io.model_files import model_metadata, package_version, plain_metadata
from visnet.io.package_safety import MAX_METADATA_BYTES, PackageError, read_member, record_package
from visnet.io.packages import METADATA_NAME, SUFFIX, has_package_suffix, is_exported_file
from visnet.model.forces import energy_and_derivatives

__all__ = [
    "EXPORT_FORMAT",
    "ExportError",
    "export_metadata",
    "export_model",
    "exported_metadata",
    "has_package_suffix",
    "is_exported_file",
    "trace_energy_forces",
]

EXPORT_FORMAT = "visnet-aoti"
SLICED_MODEL = "sliced"  # the package's second program: every layer's edges in slices (large systems)
EXPORT_FORMAT_VERSION = 1
METADATA_KEY = "visnet"  # the same JSON in AOTInductor's own metadata (read by C++ loaders)

# Input order of the exported graph (shapes; units of the model, Å):
#   z (N,) int64 | pos (N, 3) | batch (N,) int64 | edge_index (2, E) int64 with the N self-loops
#   last | cell_offsets (E, 3) | cell (G, 3, 3), zeros for molecules.
# Outputs: energy (G,) | atomic_energy (N,) | forces (N, 3) | virial (G, 3, 3).
INPUT_NAMES = ("z", "pos", "batch", "edge_index", "cell_offsets", "cell")
# What the loader reads from the metadata, with its type.
_METADATA_TYPES = {
    "cutoff": (int, float),
    "max_z": int,
    "elements": list,
    "dtype": str,
    "device": str,
    "torch_version": str,
    "hyperparameters": dict,
}


class ExportError(ValueError):
    """A model that cannot be exported, or a ``.pt2`` that cannot be loaded here (message for users)."""


class _EnergyGraph(nn.Module):
    """``ViSNet.graph_energy`` with its isolated-atom table (max_z, 1) as a buffer (stage 1)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        table = model.isolated_atom_table() if model.uses_isolated_atom_reference else None
        self.register_buffer("isolated_table", None if table is None else table.detach().clone())

    def forward(
        self, z: Tensor, pos: Tensor, batch: Tensor, edge_index: Tensor, cell_offsets: Tensor, cell: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Inputs as ``INPUT_NAMES`` -> energy (G,), atomic_energy (N,)."""
        isolated = None if self.isolated_table is None else (self.isolated_table, z)
        out = self.model.graph_energy(z, pos, cell, batch, edge_index, cell_offsets, cell.size(0), isolated)
        return out["energy"], out["atomic_energy"]


def _derivatives_fn(energy: nn.Module) -> Callable[..., tuple[Tensor, Tensor, Tensor, Tensor]]:
    """(inputs as ``INPUT_NAMES``) -> (energy (G,), atomic_energy (N,), forces (N, 3), virial
    (G, 3, 3)): the exported energy inside ``energy_and_derivatives`` (stage 2, traced by make_fx)."""

    def derivatives(
        z: Tensor, pos: Tensor, batch: Tensor, edge_index: Tensor, cell_offsets: Tensor, cell: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        def energy_fn(p: Tensor, c: Tensor | None) -> dict[str, Tensor]:
            e, atomic = energy(z, p, batch, edge_index, cell_offsets, c)
            return {"energy": e, "atomic_energy": atomic}

        with torch.enable_grad():
            out = energy_and_derivatives(energy_fn, pos, cell, batch, cell.size(0), forces=True, stress=True)
        return out["energy"].detach(), out["atomic_energy"].detach(), out["forces"], out["virial"]

    return derivatives


@contextlib.contextmanager
def _no_duck_shapes() -> Iterator[None]:
    """Symbolic sizes that equal a static size (a batch of 16 atoms, hidden width 16) stay distinct
    (NequIP's ``fx_duck_shape(False)``), so make_fx does not specialise them."""
    config = torch.fx.experimental._config
    previous = config.use_duck_shape
    config.use_duck_shape = False
    try:
        yield
    finally:
        config.use_duck_shape = previous


def example_inputs(model: nn.Module) -> tuple[Tensor, ...]:
    """Two small periodic structures (13 and 7 atoms, a few neighbours each) in the model's dtype
    and device, with radius graphs whose self-loops come last: the shapes the export traces with."""
    from visnet.neighbors import radius_graph

    generator = torch.Generator().manual_seed(0)
    sizes = (13, 7)
    elements = sorted(model.elements)
    z = torch.tensor([elements[i % len(elements)] for i in range(sum(sizes))])
    pos = torch.rand(sum(sizes), 3, generator=generator, dtype=torch.float64) * 4.0
    batch = torch.cat([torch.full((n,), k) for k, n in enumerate(sizes)])
    cell = torch.eye(3, dtype=torch.float64).expand(len(sizes), 3, 3) * 5.0
    graph = radius_graph(pos, model.cutoff, batch, cell, torch.ones(len(sizes), 3, dtype=torch.bool), self_loops=True)
    inputs = (z, pos, batch, graph.edge_index, graph.cell_offsets, cell)
    return tuple(t.to(model.device, model.dtype if t.dtype.is_floating_point else None) for t in inputs)


def _dynamic_shapes() -> tuple[dict[int, Any], ...]:
    """Dynamic atoms N, edges E and structures G for the inputs ``INPUT_NAMES``."""
    dim = torch.export.Dim
    atoms, edges, graphs = dim("num_atoms", min=2), dim("num_edges", min=4), dim("num_graphs", min=1)
    return ({0: atoms}, {0: atoms}, {0: atoms}, {1: edges}, {0: edges}, {0: graphs})


@contextlib.contextmanager
def _edges_sliced(model: nn.Module, sliced: bool) -> Iterator[None]:
    """The model's representation forced to slice its edges (``sliced``) or not, restored on exit."""
    representation = model.representation_model
    previous = representation.slice_edges
    representation.slice_edges = sliced
    try:
        yield
    finally:
        representation.slice_edges = previous


def trace_energy_forces(model: nn.Module, sliced: bool = False) -> torch.export.ExportedProgram:
    """The exported program of energy, atomic energies, forces and virial of ``model`` (stages 1–3);
    ``sliced``: every layer's edges through the sliced-edge operator (``visnet.model.sliced_edges``),
    the program for systems above ``sliced_above_edges`` edges."""
    inputs = example_inputs(model)
    with torch.no_grad(), _edges_sliced(model, sliced):
        energy = torch.export.export(_EnergyGraph(model), inputs, dynamic_shapes=_dynamic_shapes())
    with _no_duck_shapes():
        graph = make_fx(_derivatives_fn(energy.module()), tracing_mode="symbolic", _allow_non_fake_inputs=True)(*inputs)
    return torch.export.export(graph, inputs, dynamic_shapes=_dynamic_shapes())


def _compile_programs(programs: dict[str, torch.export.ExportedProgram], package: str, text: str) -> None:
    """AOTInductor-compile each program and package them under their names in ``package`` (.pt2)."""
    from torch._inductor.package import package_aoti

    options = {"aot_inductor.package": True, "aot_inductor.metadata": {METADATA_KEY: text}}
    files = {}
    for name, program in programs.items():
        args, kwargs = program.example_inputs
        files[name] = torch._inductor.aot_compile(program.module(check_guards=False), args, kwargs, options=options)
    package_aoti(package, files)


def export_metadata(model: nn.Module) -> dict[str, Any]:
    """What a loader needs without the model file: cutoff, elements, units, dtype, device,
    hyperparameters, statistics, the model's metadata, torch and package versions."""

    meta = {k: plain_metadata(v, k) for k, v in model_metadata(model).items()}
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "cutoff": float(model.cutoff),
        "max_z": int(model.max_z),
        "elements": sorted(model.elements),
        "units": meta.get("units"),
        "dtype": str(model.dtype).removeprefix("torch."),
        "device": model.device.type,
        "hyperparameters": {k: plain_metadata(v, k) for k, v in model.hparams.items()},
        "mean": float(model.mean),
        "std": float(model.std),
        "model_metadata": meta,
        "torch_version": torch.__version__,
        "visnet_version": package_version(),
        "inputs": list(INPUT_NAMES),
        "outputs": ["energy", "atomic_energy", "forces", "virial"],
        # Calls with more edges (self-loops included) run the program SLICED_MODEL: memory bounded.
        "sliced_above_edges": int(model.representation_model.slice_threshold(model.dtype)),
    }


def _check_exportable(model: nn.Module) -> None:
    """ExportError for models the exported graph cannot represent."""
    if not model.predicts_energy:
        raise ExportError(
            f"only energy models (potentials) can be exported; this model predicts {model.output_key!r} "
            "(a property model: use visnet.predict with the model file)"
        )
    if model.reduce_op != "sum":
        raise ExportError(f"only models with reduce_op='sum' can be exported, got {model.reduce_op!r}")


def export_model(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    verbose: bool = True,
) -> Path:
    """Export ``model`` (a ``visnet.ViSNet`` energy model) to an AOTInductor package ``path`` (.pt2).

    Args:
        model: the eager model (copied; the caller's is untouched).
        path: the package to write (must end in ``.pt2``; replaced atomically).
        dtype: float32 or float64 (default: the model's).
        device: "cpu" or "cuda" (default: the model's).
        verbose: print the export time to stderr.

    Returns:
        The path written.

    Raises:
        ExportError: a property model, a wrong suffix, no CUDA device for ``device="cuda"``, or no
            C++ compiler (CPU) / Triton (CUDA).
    """
    path = Path(path)
    if not has_package_suffix(path):
        raise ExportError(f"the exported package must end in {SUFFIX}, got {str(path)!r}")
    _check_exportable(model)
    device = torch.device(device) if device is not None else model.device
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ExportError("cannot export the model for cuda: this torch has no CUDA device; export with --device cpu")
    ok, reason = compile_available(device)
    if not ok:
        raise ExportError(f"cannot export the model for {device.type}: {reason}; the eager model file still works")
    model = copy.deepcopy(model).to(device=device, dtype=dtype or model.dtype).eval().requires_grad_(False)
    start = time.perf_counter()
    programs = {"model": trace_energy_forces(model), SLICED_MODEL: trace_energy_forces(model, sliced=True)}
    meta = export_metadata(model)
    text = json.dumps(meta, sort_keys=True)
    if len(text.encode()) > MAX_METADATA_BYTES:  # never write a package its loader refuses
        raise ExportError(
            f"the model's metadata takes {len(text.encode())} bytes as JSON, at most {MAX_METADATA_BYTES}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        package = os.path.join(tmp, path.name)
        _compile_programs(programs, package, text)
        _add_metadata(package, text)
        try:
            record_package(package, name=path)  # built here: loads without trust_package
        except (OSError, PackageError) as err:  # a read-only cache must not cost the package just built
            warnings.warn(
                f"{path} was written but not recorded as built here ({err}): load it with trust_package=True",
                stacklevel=2,
            )
        os.replace(package, path)
    if verbose:
        print(f"visnet: exported the model to {path} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return path


def _add_metadata(package: str, text: str) -> None:
    """Append the metadata JSON under the archive's ``extra/`` folder (readable without loading)."""
    with zipfile.ZipFile(package) as archive:
        root = archive.namelist()[0].split("/", 1)[0]
    with zipfile.ZipFile(package, "a") as archive:
        archive.writestr(f"{root}/extra/{METADATA_NAME}", text)


def check_package_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path; FileNotFoundError if missing, ExportError if a folder."""
    path = Path(path)
    if path.is_dir():
        raise ExportError(f"{path} is a folder, expected an exported package file (.pt2, visnet export)")
    if not path.is_file():
        raise FileNotFoundError(f"no such exported model: {path}")
    return path


def exported_metadata(path: str | os.PathLike, label: str | None = None) -> dict[str, Any]:
    """The metadata stored in an exported package (read bounded, without loading its compiled code);
    ``label`` names the file in messages (default ``path``).

    Raises:
        FileNotFoundError: no such file. ExportError: a folder, or not a package written by
            ``export_model``; PackageError (an ExportError's sibling ValueError): metadata over
            ``MAX_METADATA_BYTES``.
    """
    path = check_package_path(path)
    label = label or str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = [i for i in archive.infolist() if i.filename.endswith(f"/extra/{METADATA_NAME}")]
            if not infos:
                raise ExportError(f"{label} is a PT2 package but not one written by visnet export")
            meta = json.loads(read_member(archive, infos[0], MAX_METADATA_BYTES, label))
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ExportError(f"{label} is not an exported ViSNet package ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ExportError(f"{label} is not an exported ViSNet package (format {found!r})")
    wrong = [k for k, kind in _METADATA_TYPES.items() if not isinstance(meta.get(k), kind)]
    if wrong:
        raise ExportError(f"{label}: its metadata has no valid {wrong[0]!r}: a damaged package; export the model again")
    return meta
