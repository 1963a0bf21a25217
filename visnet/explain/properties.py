"""Which models explain which property, and how: the per-atom method of each kind of property.

- ``"decomposition"``: energies. The model's energy is a sum of atomic terms (its readout), so
  the per-atom energies are an exact decomposition: they sum to the total.
- ``"readout"``: other extensive properties (QM9's U0, ZPVE, ...): the readout's per-atom terms,
  which also sum to the molecular value.
- ``"integrated_gradients"``: intensive properties (HOMO, LUMO, gap, the dipole norm mu) and any
  head whose output is not a sum of atomic scalars. Per-atom terms of a sum are no explanation of
  an intensive quantity, so these get an attribution (``visnet.explain.attribution``).
"""

from __future__ import annotations

from dataclasses import dataclass

from visnet.inference.resolve import ResolvedModel
from visnet.units import reporting_unit

__all__ = ["INTENSIVE_PROPERTIES", "METHODS", "PropertyModels", "default_method", "select_property"]

# Output keys of intensive molecular properties (lower case; QM9's names).
INTENSIVE_PROPERTIES = frozenset({"homo", "lumo", "gap", "mu"})
METHODS = ("decomposition", "readout", "integrated_gradients")


@dataclass(frozen=True)
class PropertyModels:
    """The model(s) that predict one property: one model, or a committee of several.

    Attributes:
        name: the property (the models' output key, e.g. "energy", "U0", "gap").
        members: the resolved models (eval-mode private copies), at least one.
        factor: model output unit -> ``unit`` (``visnet.units.reporting_unit``).
        unit: the reported unit ("eV", "D", ...).
    """

    name: str
    members: tuple[ResolvedModel, ...]
    factor: float
    unit: str

    @property
    def is_energy(self) -> bool:
        """The members are potentials (energy models)."""
        return self.members[0].info.is_energy_model

    @property
    def has_forces(self) -> bool:
        """The members compute forces by autograd."""
        return all(m.info.has_forces for m in self.members)

    @property
    def elements(self) -> frozenset[int]:
        """Atomic numbers every member covers."""
        return frozenset.intersection(*(m.info.elements for m in self.members))

    @property
    def label(self) -> str:
        """The members' names, for messages."""
        return ", ".join(m.info.label for m in self.members)


def select_property(resolved: list[ResolvedModel], name: str | None) -> PropertyModels:
    """The models of ``resolved`` that predict ``name`` (None: the one property they all predict).

    Raises:
        ValueError: no model predicts ``name`` (the message lists what they predict); ``name`` is
            None and the models predict several properties (a bundle); a model whose output is per
            atom (the vector head): there is nothing molecular to explain.
    """
    available = sorted({m.info.output_key for m in resolved})
    if name is None:
        if len(available) > 1:
            raise ValueError(f"the models predict several properties {available}: choose one with property=")
        name = available[0]
    members = tuple(m for m in resolved if m.info.output_key == name)
    if not members:
        raise ValueError(f"no model predicts property {name!r}: the model(s) predict {available}")
    per_atom = [m.info.label for m in members if m.info.per_atom]
    if per_atom:
        raise ValueError(
            f"{per_atom[0]} predicts {name!r} per atom (a vector per atom): explain attributes molecular outputs"
        )
    units = {m.info.output_unit for m in members}
    if len(units) > 1:
        raise ValueError(f"the models predicting {name!r} record different units {sorted(units)}")
    factor, unit = reporting_unit(units.pop())
    return PropertyModels(name, members, factor, unit)


def default_method(models: PropertyModels) -> str:
    """The method for ``models``' property: "decomposition" for energies, "readout" for other
    extensive scalars, "integrated_gradients" for intensive properties and vector-valued heads."""
    info = models.members[0].info
    intensive = info.output_key.lower() in INTENSIVE_PROPERTIES or info.vector_output
    if intensive or any(getattr(m.model, "reduce_op", "sum") == "mean" for m in models.members):
        return "integrated_gradients"
    return "decomposition" if models.is_energy else "readout"
