"""Unit conversion of data: energies and lengths, with exact factors.

The table is the package's one units table (``visnet.units``, built on ``ase.units``, CODATA 2014):
the same constants the ASE calculator uses, so a value converted here and back by ASE round-trips
exactly (e.g. the shared rMD17 ethanol npz is its extended-XYZ file times
``1 / (ase.units.kcal / ase.units.mol)``). QM9's non-energy units (D, bohr³, bohr², cal/mol/K, GHz)
are labels only: those targets are never converted.
"""

from __future__ import annotations

from visnet.units import ENERGY_UNITS, LENGTH_UNITS, energy_unit, length_unit

__all__ = [
    "ENERGY_UNITS",
    "LENGTH_UNITS",
    "canonical_unit",
    "energy_factor",
    "force_factor",
    "is_energy_unit",
    "length_factor",
    "milli",
]


def canonical_unit(name: str, kind: str) -> str:
    """The canonical spelling of an energy or length unit (the tables of ``visnet.units``).

    Args:
        name: a unit name, e.g. "kcal/mol", "ev", "Ha", "Ang", "bohr".
        kind: "energy" or "length".

    Raises:
        ValueError: the unit is unknown or not of that kind.
    """
    table, lookup = (ENERGY_UNITS, energy_unit) if kind == "energy" else (LENGTH_UNITS, length_unit)
    try:
        return lookup(name)
    except ValueError:
        raise ValueError(f"unknown {kind} unit {name!r}; known {kind} units: {sorted(table)}") from None


def energy_factor(source: str, target: str) -> float:
    """Multiply an energy in ``source`` units by this to get ``target`` units."""
    return ENERGY_UNITS[canonical_unit(source, "energy")] / ENERGY_UNITS[canonical_unit(target, "energy")]


def length_factor(source: str, target: str) -> float:
    """Multiply a length in ``source`` units by this to get ``target`` units."""
    return LENGTH_UNITS[canonical_unit(source, "length")] / LENGTH_UNITS[canonical_unit(target, "length")]


def force_factor(energy_source: str, length_source: str, energy_target: str, length_target: str = "Å") -> float:
    """Multiply a force in ``energy_source/length_source`` by this to get ``energy_target/length_target``."""
    return energy_factor(energy_source, energy_target) / length_factor(length_source, length_target)


def milli(unit: str) -> tuple[float, str]:
    """(factor, name) for reporting errors of ``unit`` the way papers do: eV -> meV, else as is."""
    return (1000.0, "meV") if unit == "eV" else (1.0, unit)


def is_energy_unit(name: str) -> bool:
    """Whether ``name`` is a known energy unit."""
    try:
        canonical_unit(name, "energy")
    except ValueError:
        return False
    return True
