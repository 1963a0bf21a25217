"""``ViSNetCalculator``: ViSNet as an ASE calculator (energy, forces, per-atom energies, stress).

Always in ASE units (eV, Å, eV/Å, eV/Å³) whatever units the model was trained in: the factors
come from the model's metadata (``visnet.inference.resolve``). The neighbour list is reused between calls
with a Verlet skin (``VerletNeighborList``); the model only ever sees the edges within its
cutoff, in the order a fresh build gives, so results equal a fresh build.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress
from torch import Tensor, nn

from visnet.accel.auto import AutoViSNet
from visnet.inference.committee import (
    EnergyReferenceWarning,
    energy_reference_mismatch,
    level_of_theory_mismatch,
)
from visnet.inference.fragmented import (
    DEFAULT_NONBONDED_CUTOFF,
    FRAGMENTATIONS,
    FragmentedProtein,
    check_nonbonded_cutoff,
    topology_key,
)
from visnet.inference.resolve import ModelInfo, ModelLike, ResolvedModel, resolve_models
from visnet.io.model_files import model_metadata
from visnet.neighbors import NeighborList, radius_graph
from visnet.structures.batching import atom_slices, batch_inputs, find_faulty, relative_positions
from visnet.structures.checks import check_atoms, check_elements, check_geometry

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


class NonFiniteResultError(FloatingPointError):
    """The model returned a NaN or infinite energy, force or stress."""


# --------------------------------------------------------------------------- neighbour list


class VerletNeighborList:
    """A radius graph (with self-loops) reused while no atom moved more than ``skin / 2`` relative
    to the mean displacement of all atoms.

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
        # Pair vectors see only differences of displacements, so a shift common to all atoms can be
        # removed: without the mean, the frame (positions arrive relative to the first atom) or a
        # drifting centre would trigger rebuilds that no pair needs. Still exact: a pair changes by
        # at most |d_i - mean| + |d_j - mean| < skin.
        moved = pos.detach() - self._ref_pos
        moved2 = (moved - moved.mean(dim=0)).square().sum(dim=1).max()
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
    """One model of the calculator with its description (units, elements) and neighbour list."""

    model: nn.Module
    info: ModelInfo
    neighbors: VerletNeighborList


def _member(resolved: ResolvedModel, skin: float) -> _Member:
    """A resolved model with its own Verlet neighbour list (``skin`` in Å)."""
    return _Member(
        resolved.model, resolved.info, VerletNeighborList(resolved.model.cutoff, skin / resolved.info.units.length)
    )


def _one_spec(model: Any, model_path: Any, committee: Any) -> Any:
    """The one model spec among the calculator's three arguments (none: the bundled default)."""
    given = [x for x in (model, model_path, committee) if x is not None]
    if len(given) > 1:
        raise ValueError("give only one of model=, model_path= or committee=")
    return given[0] if given else "default"


# --------------------------------------------------------------------------- calculator


class ViSNetCalculator(Calculator):
    """ASE calculator for ViSNet models.

    Args:
        model: any model spec of ``visnet.inference.resolve.resolve_models``: a ViSNet module, a
            model file / bundled-model name, an exported package, a run folder (its members form a
            committee), or a list of those (committee).
        model_path: a model file or bundled-model name (alternative to ``model``).
        device: "cpu", "cuda", a torch.device, or None/"auto" (CUDA when available).
        dtype: "float64" (default) or "float32"; applied to private copies of the models, torch's
            global default dtype is never changed.
        skin: Verlet skin in Å (0: rebuild the neighbour list whenever positions change).
        committee: a list of models / files; results are the committee mean, plus
            ``energy_std`` (eV) and ``forces_std`` (N, 3) eV/Å (population std over members).
            Members with different energy references (``visnet.inference.committee``) get one
            ``EnergyReferenceWarning``: their mean energy and energy_std are not meaningful.
        compile: the same as ``accel="compile"`` (kept for existing code). Default False.
        trust_package: load exported packages (``.pt2``) that were not built on this machine:
            a package holds native code that runs when it is loaded (like
            ``torch.load(weights_only=False)``); only for packages from a source you trust.
        accel: "auto" (default: eager at first, then the model's exported package from the cache
            once the job is long enough, built in the background when missing; see
            ``visnet.accel.auto``), "eager", "compile" or "export" (``resolve_models``).
        fragmentation: None (the whole structure in one model call) or "ai2bmd": a protein (atoms
            with residue arrays, e.g. from ``visnet.proteins.read_protein``) split into capped
            dipeptide and ACE-NME units (``visnet.inference.fragmented``); adds the result
            ``residue_energies`` (R,) eV. Molecules in vacuum only (no stress).
        nonbonded: with fragmentation, "amber14" (default: Amber14 Coulomb + Lennard-Jones between
            atoms that share no unit) or None (units only).
        nonbonded_cutoff: Å (default 12): the Amber term in its shifted-force form over a
            neighbour list (linear in the atoms; ``visnet.proteins.nonbonded``); None: the exact
            sum over all pairs (AI2BMD's, O(N^2): for small proteins).
        **kwargs: passed to ``ase.calculators.calculator.Calculator`` (e.g. ``label``).

    With none of ``model``, ``model_path`` or ``committee`` the bundled ``"default"`` model is
    used. Only energy models (potentials) are accepted: a property model (e.g. QM9's gap) is
    refused with a ValueError naming its property. Results: ``energy``/``free_energy`` (float,
    eV), ``forces`` (N, 3) eV/Å, ``energies`` (N,) eV per atom, ``stress`` (6,) eV/Å³ Voigt
    (3D-periodic systems only; computed with the forces in the same model call, so asking for
    stress after forces costs nothing; molecules and slabs raise PropertyNotImplementedError).

    Thread safety: one calculator may be shared by several threads; property requests and
    calculations are serialised by a lock (they run one at a time, each on its own structure).

    Example:
        ```python
        from ase.build import molecule
        from visnet import ViSNetCalculator

        atoms = molecule("CH3CH2OH")
        atoms.calc = ViSNetCalculator(model="default")   # the bundled model
        energy = atoms.get_potential_energy()            # eV
        forces = atoms.get_forces()                      # (9, 3) eV/Å
        ```
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
        compile: bool = False,
        trust_package: bool = False,
        fragmentation: str | None = None,
        nonbonded: str | None = "amber14",
        nonbonded_cutoff: float | None = DEFAULT_NONBONDED_CUTOFF,
        accel: str = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._lock = threading.RLock()
        if fragmentation is not None and fragmentation not in FRAGMENTATIONS:
            raise ValueError(f"fragmentation must be None or one of {FRAGMENTATIONS}, got {fragmentation!r}")
        self.fragmentation, self.nonbonded = fragmentation, nonbonded
        self.nonbonded_cutoff = check_nonbonded_cutoff(nonbonded_cutoff)
        self._protein: tuple[tuple, FragmentedProtein] | None = None  # (topology key, units) of the last protein
        if not skin >= 0:
            raise ValueError(f"skin must be >= 0 Å, got {skin}")
        resolved = resolve_models(
            _one_spec(model, model_path, committee),
            device=device,
            dtype=dtype,
            compile=compile,
            trust_package=trust_package,
            purpose="the calculator (and MD)",
            accel=accel,
        )
        self.device, self.dtype = resolved[0].device, resolved[0].dtype
        self.members = [_member(r, float(skin)) for r in resolved]
        self.elements = frozenset.intersection(*(m.info.elements for m in self.members))
        self._reference_warned = False
        if len(self.members) > 1:
            self.implemented_properties = [*type(self).implemented_properties, "energy_std", "forces_std"]
            metadata = [model_metadata(m.model) for m in self.members]
            self._warn_reference(level_of_theory_mismatch(metadata, [m.info.label for m in self.members]))
        self.num_evaluations = 0  # model evaluations (one per calculate / calculate_batch call)
        self.parameters.update(
            model=[m.info.label for m in self.members],
            device=str(self.device),
            dtype=str(self.dtype).removeprefix("torch."),
            skin=float(skin),
        )
        if fragmentation is not None:
            self.implemented_properties = [*self.implemented_properties, "residue_energies"]
            self.parameters.update(
                fragmentation=fragmentation, nonbonded=nonbonded, nonbonded_cutoff=self.nonbonded_cutoff
            )

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles get a lock of their own (a lock cannot be copied)."""
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    @property
    def model(self) -> nn.Module:
        """The (first) model, as evaluated by the calculator (private copy)."""
        return self.members[0].model

    def expect_calls(self, calls: int) -> None:
        """Announce about ``calls`` more calculations (e.g. an MD run's steps): with
        ``accel="auto"`` the models then judge after two calls whether their package pays."""
        for member in self.members:
            if isinstance(member.model, AutoViSNet):
                member.model.expect_calls(calls)

    @property
    def num_neighbor_builds(self) -> int:
        """Neighbour-list builds so far (first committee member)."""
        return self.members[0].neighbors.num_builds

    def check_atoms(self, atoms: Atoms) -> None:
        """Raise ValueError, before any model work, for elements the model was not trained on,
        non-finite positions or a periodic system without a cell."""
        check_atoms(atoms, self.elements)

    def get_property(self, name: str, atoms: Atoms | None = None, allow_calculation: bool = True) -> Any:
        """ASE's ``get_property`` under the calculator's lock (state check, calculation and the
        read of ``results`` belong together when threads share the calculator)."""
        with self._lock:
            return super().get_property(name, atoms, allow_calculation)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        """Fill ``self.results`` for ``atoms``: energy, free_energy, forces, energies, and stress
        for a 3D-periodic system (one model call per committee member)."""
        with self._lock:
            super().calculate(atoms, properties, system_changes)
            atoms = self.atoms
            if "stress" in properties and not atoms.pbc.all():
                raise PropertyNotImplementedError(
                    f"stress needs a 3D-periodic system; atoms.pbc = {atoms.pbc.tolist()}"
                )
            if self.fragmentation is not None:
                self._check_protein(atoms)
                protein = self.protein_units(atoms)
                outputs = [
                    protein.evaluate(m.model, m.info, atoms.positions, self.device, self.dtype) for m in self.members
                ]
                self.num_evaluations += 1
                self.results = _combine(outputs)
                self.results["free_energy"] = self.results["energy"]
                return
            self.check_atoms(atoms)
            # A 3D-periodic system gets its stress from the same backward pass as the forces, so
            # get_forces() then get_stress() (NPT, cell relaxation) costs one model call.
            want_stress = bool(atoms.pbc.all())
            outputs = [self._evaluate(member, atoms, want_stress) for member in self.members]
            self.num_evaluations += 1
            self.results = _combine(outputs)
            self._check_references(outputs, self.results)

    def _check_protein(self, atoms: Atoms) -> None:
        if atoms.pbc.any():
            raise ValueError(
                "fragmentation is for a protein in vacuum (pbc off); in water use ML/MM (docs: tutorials/proteins.md)"
            )
        if not np.isfinite(atoms.positions).all():
            raise ValueError("atom positions contain NaN or infinity")

    def protein_units(self, atoms: Atoms) -> FragmentedProtein:
        """The AI2BMD units of protein ``atoms`` (``fragmentation="ai2bmd"``), built once per topology."""
        key = topology_key(atoms)
        if self._protein is None or self._protein[0] != key:
            self._protein = (
                key,
                FragmentedProtein.build(atoms, self.elements, self.nonbonded, self.nonbonded_cutoff),
            )
        return self._protein[1]

    def _warn_reference(self, message: str | None) -> None:
        """Warn once per calculator that the committee's energies mix references."""
        if message and not self._reference_warned:
            self._reference_warned = True
            warnings.warn(message, EnergyReferenceWarning, stacklevel=3)

    def _check_references(self, outputs: list[dict[str, Any]], combined: dict[str, Any]) -> None:
        """Warn (once) when the members' energies of one structure differ by a reference offset."""
        if len(outputs) > 1 and not self._reference_warned:
            energies = [o["energy"] for o in outputs]
            forces = combined["forces_std"]
            self._warn_reference(energy_reference_mismatch(energies, forces, len(forces)))

    def _evaluate(self, member: _Member, atoms: Atoms, want_stress: bool) -> dict[str, Any]:
        length = member.info.units.length
        z = torch.as_tensor(atoms.numbers, dtype=torch.long, device=self.device)
        pos = torch.as_tensor(relative_positions(atoms, length), dtype=self.dtype, device=self.device)
        cell = pbc = None
        if atoms.pbc.any():
            cell = torch.as_tensor(np.asarray(atoms.cell) / length, dtype=self.dtype, device=self.device)
            pbc = torch.as_tensor(atoms.pbc, dtype=torch.bool, device=self.device)
        key = (atoms.numbers.tobytes(), np.asarray(atoms.cell).tobytes(), atoms.pbc.tobytes())
        neighbors = member.neighbors.get(pos, cell, pbc, key)
        out = member.model(
            z,
            pos,
            cell=cell,
            pbc=pbc,
            compute_forces=True,
            compute_stress=want_stress,
            neighbors=neighbors,
            inputs_checked=True,  # check_atoms ran in calculate(): the model checks only coincident atoms
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
            ``calculate`` (equal to evaluating the images one by one, to float rounding); "stress"
            whenever every image is 3D-periodic.
        """
        images = list(images)
        if self.fragmentation is not None:
            raise ValueError("calculate_batch does not fragment proteins: call calculate() per structure")
        if not images:
            return []
        for k, atoms in enumerate(images):
            if "stress" in properties and not atoms.pbc.all():
                raise PropertyNotImplementedError(
                    f"stress needs 3D-periodic systems; image {k} has pbc {atoms.pbc.tolist()}"
                )
            try:
                self.check_atoms(atoms)
            except ValueError as err:
                raise ValueError(f"image {k}: {err}") from None
        want_stress = all(atoms.pbc.all() for atoms in images)  # as calculate(): free with the forces
        with self._lock:
            try:
                outputs = [self._evaluate_batch(member, images, want_stress) for member in self.members]
            except ValueError as err:
                raise find_faulty(images, self._probe, err, lambda k, _: f"image {k}") from None
            self.num_evaluations += 1
        results = []
        for k in range(len(images)):
            per_member = [member_out[k] for member_out in outputs]
            results.append(_combine(per_member))
            self._check_references(per_member, results[-1])
        return results

    def _probe(self, atoms: Atoms) -> None:
        """Evaluate one structure without forces (raises the model's ValueError for it)."""
        member = self.members[0]
        inputs = batch_inputs([atoms], member.info.units.length, self.dtype, self.device)
        with torch.no_grad():
            member.model(*inputs, compute_forces=False)

    def _evaluate_batch(self, member: _Member, images: list[Atoms], want_stress: bool) -> list[dict[str, Any]]:
        inputs = batch_inputs(images, member.info.units.length, self.dtype, self.device)
        out = member.model(*inputs, compute_forces=True, compute_stress=want_stress)
        slices = atom_slices([len(a) for a in images])
        return [
            _to_ase(out, member, graph=k, atoms_slice=part, want_stress=want_stress) for k, part in enumerate(slices)
        ]


# --------------------------------------------------------------------------- results


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().to(device="cpu", dtype=torch.float64).numpy()


def _to_ase(
    out: dict[str, Tensor], member: _Member, graph: int, atoms_slice: slice, want_stress: bool
) -> dict[str, Any]:
    """Model outputs of one graph -> ASE results in eV, eV/Å, eV/Å³; raises on NaN/inf."""
    conv, key = member.info.units, member.info.output_key
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
            f"{member.info.label} returned non-finite {', '.join(bad)} (atoms too close, or far outside the training data?)"
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
