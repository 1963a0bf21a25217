"""``ViSNetCalculator``: ViSNet as an ASE calculator (energy, forces, per-atom energies, stress).

Always in ASE units (eV, Å, eV/Å, eV/Å³) whatever units the model was trained in: the factors
come from the model's metadata (``visnet.units``). The neighbour list is reused between calls
with a Verlet skin (``VerletNeighborList``); the model only ever sees the edges within its
cutoff, in the order a fresh build gives, so results equal a fresh build.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.data import chemical_symbols
from ase.stress import full_3x3_to_voigt_6_stress
from torch import Tensor, nn

from visnet.checkpoint import load_model, model_metadata
from visnet.neighbors import NeighborList, radius_graph
from visnet.units import UnitConversion

__all__ = [
    "ViSNetCalculator",
    "VerletNeighborList",
    "NonFiniteResultError",
    "DEFAULT_SKIN",
    "batch_inputs",
    "check_elements",
    "check_geometry",
]

# Verlet skin (Å): the list is built with cutoff + skin and rebuilt once an atom moved skin / 2.
DEFAULT_SKIN = 0.5
ModelLike = nn.Module | str | os.PathLike


class NonFiniteResultError(FloatingPointError):
    """The model returned a NaN or infinite energy, force or stress."""


# --------------------------------------------------------------------------- neighbour list


class VerletNeighborList:
    """A radius graph (with self-loops) reused while no atom moved more than ``skin / 2``.

    Args:
        cutoff: model cutoff (model length units).
        skin: extra search radius (model length units); 0 rebuilds on every position change.
    """

    def __init__(self, cutoff: float, skin: float) -> None:
        if skin < 0:
            raise ValueError(f"skin must be >= 0, got {skin}")
        self.cutoff, self.skin = float(cutoff), float(skin)
        self.num_builds = 0
        self._full: NeighborList | None = None
        self._ref_pos: Tensor | None = None
        self._key: tuple | None = None

    def get(self, pos: Tensor, cell: Tensor | None, pbc: Tensor | None, key: tuple) -> NeighborList:
        """Edges of ``pos`` within the cutoff.

        Args:
            pos: (N, 3) positions (model length units).
            cell: (3, 3) lattice vectors as rows or None; pbc: (3,) bool or None.
            key: anything that changes with the atomic numbers, cell or pbc (forces a rebuild).

        Returns:
            NeighborList with ``edge_index`` (2, E), ``cell_offsets`` (E, 3) and one self-loop per
            atom, equal to ``radius_graph(pos, cutoff, cell=cell, pbc=pbc, self_loops=True)``.
        """
        if self._needs_rebuild(pos, key):
            self._full = radius_graph(pos.detach(), self.cutoff + self.skin, None, cell, pbc, self_loops=True)
            self._ref_pos, self._key = pos.detach().clone(), key
            self.num_builds += 1
        if self.skin == 0.0:
            return self._full
        return self._within_cutoff(pos, cell)

    def _needs_rebuild(self, pos: Tensor, key: tuple) -> bool:
        if self._full is None or key != self._key or pos.shape != self._ref_pos.shape:
            return True
        moved2 = (pos.detach() - self._ref_pos).square().sum(dim=1).max()
        return bool(moved2 > (0.5 * self.skin) ** 2)

    def _within_cutoff(self, pos: Tensor, cell: Tensor | None) -> NeighborList:
        """The stored edges (sorted like a fresh build) that are now shorter than the cutoff."""
        full = self._full
        pos64 = pos.detach().to(torch.float64)
        j, i = full.edge_index
        vec = pos64.index_select(0, j) - pos64.index_select(0, i)
        if cell is not None:
            vec = vec + full.cell_offsets.to(torch.float64) @ cell.detach().to(torch.float64)
        keep = vec.square().sum(dim=1) < self.cutoff**2  # self-loops have length 0: kept
        return NeighborList(full.edge_index[:, keep], full.cell_offsets[keep])


# --------------------------------------------------------------------------- committee members


@dataclass
class _Member:
    """One model of the calculator with its units and neighbour list."""

    model: nn.Module
    units: UnitConversion
    elements: frozenset[int]
    neighbors: VerletNeighborList
    name: str


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    resolved = getattr(torch, dtype.removeprefix("torch."), None) if isinstance(dtype, str) else dtype
    if resolved not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return resolved


def _prepare_model(model: ModelLike, device: torch.device, dtype: torch.dtype) -> tuple[nn.Module, str]:
    """A private eval-mode copy of ``model`` on ``device`` in ``dtype`` (the caller's is untouched)."""
    if isinstance(model, (str, os.PathLike)):
        return load_model(model, device=device, dtype=dtype).requires_grad_(False), str(model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a ViSNet module or a path/name, got {type(model).__name__}")
    model = copy.deepcopy(model).to(device=device, dtype=dtype).eval().requires_grad_(False)
    return model, type(model).__name__


def _elements_of(model: nn.Module) -> frozenset[int]:
    """Atomic numbers the model may be used for: metadata "elements" (numbers or symbols), else 1..max_z−1."""
    listed = model_metadata(model).get("elements")
    if listed is None:
        return frozenset(range(1, int(model.max_z)))
    return frozenset(_atomic_number(e) for e in listed)


def _atomic_number(element: int | str) -> int:
    """Atomic number of an entry of the metadata's "elements" (a number or a symbol)."""
    if isinstance(element, str) and element in chemical_symbols[1:]:
        return chemical_symbols.index(element)
    if not isinstance(element, str) and 0 < int(element) < len(chemical_symbols):
        return int(element)
    raise ValueError(f"the model's metadata lists an unknown element {element!r} in 'elements'")


def _make_member(model: ModelLike, device: torch.device, dtype: torch.dtype, skin: float) -> _Member:
    model, name = _prepare_model(model, device, dtype)
    head = getattr(model, "output_model", None)
    if head is not None and (getattr(head, "is_vector", False) or getattr(head, "per_atom", False)):
        raise ValueError(f"{name}: the calculator needs an energy model, this one predicts a vector/per-atom property")
    units = UnitConversion.from_metadata(model_metadata(model).get("units"))
    neighbors = VerletNeighborList(model.cutoff, skin / units.length)
    return _Member(model, units, _elements_of(model), neighbors, name)


def _member_specs(model: Any, model_path: Any, committee: Any) -> list[ModelLike]:
    given = [x for x in (model, model_path, committee) if x is not None]
    if len(given) > 1:
        raise ValueError("give only one of model=, model_path= or committee=")
    if not given:
        return ["default"]
    spec = given[0]
    specs = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if not specs:
        raise ValueError("the committee is empty")
    return specs


# --------------------------------------------------------------------------- input checks


def _symbols(numbers: Sequence[int]) -> str:
    return ", ".join(f"{chemical_symbols[z] if 0 < z < len(chemical_symbols) else '?'} (Z={z})" for z in numbers)


def check_elements(numbers: np.ndarray, known: frozenset[int]) -> None:
    """Raise ValueError naming the elements of ``numbers`` (N,) that are not in ``known``."""
    unknown = sorted(set(int(z) for z in np.unique(numbers)) - known)
    if unknown:
        first = int(np.flatnonzero(np.isin(numbers, unknown))[0])
        covered = ", ".join(chemical_symbols[z] for z in sorted(known))
        if len(known) > 20:
            covered = f"Z {min(known)}..{max(known)}"
        raise ValueError(
            f"the model was not trained on element(s) {_symbols(unknown)} (first at atom {first}); it covers {covered}"
        )


def check_geometry(atoms: Atoms) -> None:
    """Raise ValueError for no atoms, non-finite positions or a periodic direction without a cell vector."""
    if len(atoms) == 0:
        raise ValueError("empty structure: the Atoms object holds no atoms")
    finite = np.isfinite(atoms.positions).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(f"atoms {bad[:10].tolist()} have non-finite positions (NaN or inf)")
    pbc, cell = np.asarray(atoms.pbc, dtype=bool), np.asarray(atoms.cell)
    if pbc.any():
        if not np.isfinite(cell).all():
            raise ValueError("the cell has non-finite entries")
        rows = cell[pbc]
        if np.linalg.matrix_rank(rows, tol=1e-8) < len(rows):
            axes = "".join("xyz"[k] for k in np.flatnonzero(pbc))
            raise ValueError(
                f"atoms are periodic along {axes} (pbc={pbc.tolist()}) but the cell vectors there are zero or "
                f"degenerate: {rows.tolist()}; set atoms.cell, or atoms.pbc = False for a molecule"
            )


# --------------------------------------------------------------------------- calculator


class ViSNetCalculator(Calculator):
    """ASE calculator for ViSNet models.

    Args:
        model: a ViSNet module, a model file / bundled-model name, or a list of those (committee).
        model_path: a model file or bundled-model name (alternative to ``model``).
        device: "cpu", "cuda", a torch.device, or None/"auto" (CUDA when available).
        dtype: "float64" (default) or "float32"; applied to private copies of the models, torch's
            global default dtype is never changed.
        skin: Verlet skin in Å (0: rebuild the neighbour list whenever positions change).
        committee: a list of models / files; results are the committee mean, plus
            ``energy_std`` (eV) and ``forces_std`` (N, 3) eV/Å (population std over members).
        **kwargs: passed to ``ase.calculators.calculator.Calculator`` (e.g. ``label``).

    With none of ``model``, ``model_path`` or ``committee`` the bundled ``"default"`` model is
    used. Results: ``energy``/``free_energy`` (float, eV), ``forces`` (N, 3) eV/Å, ``energies``
    (N,) eV per atom, ``stress`` (6,) eV/Å³ Voigt (3D-periodic systems only).
    """

    implemented_properties = ["energy", "free_energy", "forces", "energies", "stress"]

    def __init__(
        self,
        model: ModelLike | Sequence[ModelLike] | None = None,
        model_path: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype = "float64",
        skin: float = DEFAULT_SKIN,
        committee: Sequence[ModelLike] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.device = _resolve_device(device)
        self.dtype = _resolve_dtype(dtype)
        if not skin >= 0:
            raise ValueError(f"skin must be >= 0 Å, got {skin}")
        specs = _member_specs(model, model_path, committee)
        self.members = [_make_member(spec, self.device, self.dtype, float(skin)) for spec in specs]
        self.elements = frozenset.intersection(*(m.elements for m in self.members))
        if len(self.members) > 1:
            self.implemented_properties = [*type(self).implemented_properties, "energy_std", "forces_std"]
        self.num_evaluations = 0  # model evaluations (one per calculate / calculate_batch call)
        self.parameters.update(
            model=[m.name for m in self.members],
            device=str(self.device),
            dtype=str(self.dtype).removeprefix("torch."),
            skin=float(skin),
        )

    @property
    def model(self) -> nn.Module:
        """The (first) model, as evaluated by the calculator (private copy)."""
        return self.members[0].model

    @property
    def num_neighbor_builds(self) -> int:
        """Neighbour-list builds so far (first committee member)."""
        return self.members[0].neighbors.num_builds

    def check_atoms(self, atoms: Atoms) -> None:
        """Raise ValueError, before any model work, for elements the model was not trained on,
        non-finite positions or a periodic system without a cell."""
        check_elements(atoms.numbers, self.elements)
        check_geometry(atoms)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        """Fill ``self.results`` for ``atoms`` (energy, free_energy, forces, energies, + stress if asked)."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        want_stress = "stress" in properties
        if want_stress and not atoms.pbc.all():
            raise PropertyNotImplementedError(f"stress needs a 3D-periodic system; atoms.pbc = {atoms.pbc.tolist()}")
        self.check_atoms(atoms)
        outputs = [self._evaluate(member, atoms, want_stress) for member in self.members]
        self.num_evaluations += 1
        self.results = _combine(outputs)

    def _evaluate(self, member: _Member, atoms: Atoms, want_stress: bool) -> dict[str, Any]:
        conv = member.units
        z = torch.as_tensor(atoms.numbers, dtype=torch.long, device=self.device)
        pos = torch.as_tensor(atoms.positions / conv.length, dtype=self.dtype, device=self.device)
        cell = pbc = None
        if atoms.pbc.any():
            cell = torch.as_tensor(np.asarray(atoms.cell) / conv.length, dtype=self.dtype, device=self.device)
            pbc = torch.as_tensor(atoms.pbc, dtype=torch.bool, device=self.device)
        key = (atoms.numbers.tobytes(), np.asarray(atoms.cell).tobytes(), atoms.pbc.tobytes())
        neighbors = member.neighbors.get(pos, cell, pbc, key)
        out = member.model(
            z, pos, cell=cell, pbc=pbc, compute_forces=True, compute_stress=want_stress, neighbors=neighbors
        )
        return _to_ase(out, member, graph=0, atoms_slice=slice(None), want_stress=want_stress)

    # ------------------------------------------------------------------ batches
    def calculate_batch(
        self, images: Sequence[Atoms], properties: Sequence[str] = ("energy", "forces")
    ) -> list[dict[str, Any]]:
        """Evaluate many structures in one model call per committee member.

        Args:
            images: structures (molecules and/or periodic systems, any sizes).
            properties: with "stress", every image must be 3D-periodic.

        Returns:
            One results dict per image, with the same keys and units as ``calc.results`` after
            ``calculate`` (equal to evaluating the images one by one, to float rounding).
        """
        images = list(images)
        if not images:
            return []
        want_stress = "stress" in properties
        for k, atoms in enumerate(images):
            if want_stress and not atoms.pbc.all():
                raise PropertyNotImplementedError(
                    f"stress needs 3D-periodic systems; image {k} has pbc {atoms.pbc.tolist()}"
                )
            try:
                self.check_atoms(atoms)
            except ValueError as err:
                raise ValueError(f"image {k}: {err}") from None
        try:
            outputs = [self._evaluate_batch(member, images, want_stress) for member in self.members]
        except ValueError as err:
            raise self._name_the_image(images, err) from None
        self.num_evaluations += 1
        return [_combine([member_out[k] for member_out in outputs]) for k in range(len(images))]

    def _name_the_image(self, images: list[Atoms], err: ValueError) -> ValueError:
        """The model rejected the batch (e.g. coincident atoms): find the image at fault, so the
        message names it and its own atom numbers (not the batch's)."""
        member = self.members[0]
        for k, atoms in enumerate(images):
            inputs = batch_inputs([atoms], member.units.length, self.dtype, self.device)
            try:
                with torch.no_grad():
                    member.model(*inputs, compute_forces=False)
            except ValueError as inner:
                return ValueError(f"image {k}: {inner}")
        return err

    def _evaluate_batch(self, member: _Member, images: list[Atoms], want_stress: bool) -> list[dict[str, Any]]:
        inputs = batch_inputs(images, member.units.length, self.dtype, self.device)
        out = member.model(*inputs, compute_forces=True, compute_stress=want_stress)
        starts = np.concatenate([[0], np.cumsum([len(a) for a in images])])
        return [
            _to_ase(out, member, graph=k, atoms_slice=slice(starts[k], starts[k + 1]), want_stress=want_stress)
            for k in range(len(images))
        ]


# --------------------------------------------------------------------------- batches


def batch_inputs(
    images: Sequence[Atoms], length: float, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """Model inputs for many structures in one batch.

    Args:
        images: structures (molecules and/or periodic systems), positions in Å.
        length: Å per model length unit (positions and cells are divided by it).
        dtype, device: of the returned floating-point tensors.

    Returns:
        (z (N,) int64, pos (N, 3) model length units, batch (N,) int64, cell (G, 3, 3) or None
        (zeros for the non-periodic images of a mixed batch), pbc (G, 3) bool or None).
    """
    counts = torch.as_tensor([len(a) for a in images], device=device)
    z = torch.as_tensor(np.concatenate([a.numbers for a in images]), dtype=torch.long, device=device)
    pos = torch.as_tensor(np.concatenate([a.positions for a in images]) / length, dtype=dtype, device=device)
    batch = torch.repeat_interleave(torch.arange(len(images), device=device), counts)
    cell = pbc = None
    if any(a.pbc.any() for a in images):
        cells = np.stack([np.asarray(a.cell) if a.pbc.any() else np.zeros((3, 3)) for a in images])
        cell = torch.as_tensor(cells / length, dtype=dtype, device=device)
        pbc = torch.as_tensor(np.stack([a.pbc for a in images]), dtype=torch.bool, device=device)
    return z, pos, batch, cell, pbc


# --------------------------------------------------------------------------- results


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().to(device="cpu", dtype=torch.float64).numpy()


def _to_ase(
    out: dict[str, Tensor], member: _Member, graph: int, atoms_slice: slice, want_stress: bool
) -> dict[str, Any]:
    """Model outputs of one graph -> ASE results in eV, eV/Å, eV/Å³; raises on NaN/inf."""
    conv, key = member.units, member.model.output_key
    results: dict[str, Any] = {
        "energy": float(out[key][graph].detach()) * conv.energy,
        "energies": _numpy(out[f"atomic_{key}"][atoms_slice]) * conv.energy,
        "forces": _numpy(out["forces"][atoms_slice]) * conv.force,
    }
    if want_stress:
        results["stress"] = full_3x3_to_voigt_6_stress(_numpy(out["stress"][graph])) * conv.stress
    bad = [name for name, value in results.items() if not np.isfinite(value).all()]
    if bad:
        raise NonFiniteResultError(
            f"{member.name} returned non-finite {', '.join(bad)} (atoms too close, or far outside the training data?)"
        )
    results["free_energy"] = results["energy"]
    return results


def _combine(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """Committee mean of each result, plus ``energy_std`` and ``forces_std`` for 2+ members."""
    if len(outputs) == 1:
        return outputs[0]
    results: dict[str, Any] = {}
    for name in outputs[0]:
        stacked = np.stack([np.asarray(o[name], dtype=np.float64) for o in outputs])
        mean = stacked.mean(axis=0)
        results[name] = float(mean) if mean.ndim == 0 else mean
    results["energy_std"] = float(np.std([o["energy"] for o in outputs]))
    results["forces_std"] = np.stack([o["forces"] for o in outputs]).std(axis=0)
    return results
