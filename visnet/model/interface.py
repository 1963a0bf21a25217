"""The model interface: what every runnable form of a ViSNet offers the rest of the package.

``AtomisticModel`` is declared here once; ``visnet.ViSNet`` (eager), ``visnet.accel.compile.
CompiledViSNet`` and ``visnet.accel.exported.ExportedViSNet`` implement it, each with its own
explicit attributes (no forwarding of unknown attributes). Code above the model layer (the
resolver, the calculator, MD, ``visnet.predict``, evaluation, the engines, ``save_model``) reads
a model only through these names.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from ase.data import chemical_symbols
from torch import Tensor

from visnet.neighbors import NeighborList

__all__ = ["FORMS", "AtomisticModel", "ModelForm", "atomic_number", "declared_elements", "model_form"]

ModelForm = Literal["eager", "compiled", "exported"]
FORMS: tuple[ModelForm, ...] = ("eager", "compiled", "exported")


@runtime_checkable
class AtomisticModel(Protocol):
    """A runnable ViSNet in any form: its call and what callers may read about it.

    Attributes:
        cutoff: neighbour cutoff (Å).
        max_z: element tables cover atomic numbers 1..max_z−1.
        elements: the atomic numbers the model may be used for (``declared_elements``).
        metadata: units, training data, ... as saved with the model (a dict; may be empty).
        hparams: the architecture (constructor arguments but the statistics; a copy).
        output_key: name of the main output in the returned dict ("energy", "gap", ...).
        predicts_energy: a potential energy: only such models may drive a calculator or MD.
        per_atom_output: the main output is per atom ((N, 3) for the vector head), not per molecule.
        vector_output: the head's outputs are vectors (the dipole's (G, 3), the vector head's (N, 3)).
        derivative: forces are computed when the call does not say (``compute_forces=None``).
        dtype: the float dtype of the positions and cells the call takes.
        device: where the call runs.
        form: "eager" (a ``ViSNet``), "compiled" (``torch.compile``) or "exported" (AOTInductor);
            a class attribute, so ``model_form`` reads it without touching the instance.
        eager_model: the ``ViSNet`` holding the weights (itself when eager), None for an exported
            package (it holds compiled code, not weights).
    """

    @property
    def cutoff(self) -> float: ...
    @property
    def max_z(self) -> int: ...
    @property
    def elements(self) -> frozenset[int]: ...
    @property
    def metadata(self) -> dict[str, Any]: ...
    @property
    def hparams(self) -> dict[str, Any]: ...
    @property
    def output_key(self) -> str: ...
    @property
    def predicts_energy(self) -> bool: ...
    @property
    def per_atom_output(self) -> bool: ...
    @property
    def vector_output(self) -> bool: ...
    @property
    def derivative(self) -> bool: ...
    @property
    def dtype(self) -> torch.dtype: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def form(self) -> ModelForm: ...
    @property
    def eager_model(self) -> Any: ...

    def __call__(
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
        """Outputs of one batch of structures.

        Args:
            z: (N,) int64 atomic numbers. pos: (N, 3) Å, in ``dtype``.
            batch: (N,) int64 sorted structure index (None: one structure).
            cell: (3, 3) or (G, 3, 3) Å lattice vectors as rows, or None.
            pbc: (3,) or (G, 3) bool periodic directions (None with a cell: all periodic).
            compute_forces: override ``derivative``. compute_stress: also the stress (needs a cell).
            neighbors: a precomputed radius graph **with** self-loops (built when None).
            inputs_checked: z and pos were validated by the caller (``visnet.structures.checks``).

        Returns:
            ``output_key`` (G,), "atomic_<key>" (N,), "forces" (N, 3) = −dE/dpos, "stress"
            (G, 3, 3) = (1/V) dE/dε and "virial" (G, 3, 3) = −dE/dε, as requested.
        """
        ...


def model_form(model: object) -> ModelForm | None:
    """The form ``model``'s class declares, or None for an object that is not a model of this package.

    Read from the class only: ``isinstance(model, AtomisticModel)`` evaluates every property, and
    a property of a half-built module (an exported package without its metadata) may raise.
    """
    form = inspect.getattr_static(type(model), "form", None)
    return form if form in FORMS else None


def declared_elements(metadata: Mapping[str, Any], max_z: int) -> frozenset[int]:
    """Atomic numbers a model may be used for: ``metadata["elements"]`` (numbers or symbols) when
    listed, else every element of its tables, 1..max_z−1."""
    listed = metadata.get("elements")
    if listed is None:
        return frozenset(range(1, int(max_z)))
    return frozenset(atomic_number(e) for e in listed)


def atomic_number(element: int | str) -> int:
    """Atomic number of an entry of the metadata's "elements" (a number or a symbol)."""
    if isinstance(element, str) and element in chemical_symbols[1:]:
        return chemical_symbols.index(element)
    if not isinstance(element, str) and 0 < int(element) < len(chemical_symbols):
        return int(element)
    raise ValueError(f"the model's metadata lists an unknown element {element!r} in 'elements'")
