"""The package's one units module: names, exact factors (``ase.units``, CODATA 2014), conversions.

A model file records the units it was trained in (``metadata["units"] = {"energy": ...,
"length": ...}``, see ``visnet.io.model_files.model_metadata``). The ASE calculator and the MD drivers
always work in eV, Å, eV/Å and eV/Å³; data files are converted with the same factors, so a value
converted here and back by ASE round-trips exactly (e.g. the shared rMD17 ethanol npz is its
extended-XYZ file times ``1 / (ase.units.kcal / ase.units.mol)``). QM9's non-energy units (D,
bohr³, bohr², cal/mol/K, GHz) are labels only: those targets are never converted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ase import units as ase_units

# eV per unit of energy.
ENERGY_UNITS: dict[str, float] = {
    "eV": 1.0,
    "meV": 1e-3,
    "kcal/mol": ase_units.kcal / ase_units.mol,
    "kJ/mol": ase_units.kJ / ase_units.mol,
    "Hartree": ase_units.Hartree,
}
# Å per unit of length.
LENGTH_UNITS: dict[str, float] = {
    "Å": 1.0,
    "bohr": ase_units.Bohr,
    "nm": 10.0,
}
# One picosecond in ASE time units (MD friction, thermostat times and trajectory times in ps).
PICOSECOND: float = 1000.0 * ase_units.fs
# Other spellings seen in model files and datasets, lower case, spaces removed.
_ENERGY_ALIASES = {
    "ev": "eV",
    "mev": "meV",
    "kcal/mol": "kcal/mol",
    "kcal_mol": "kcal/mol",
    "kcalmol-1": "kcal/mol",
    "kj/mol": "kJ/mol",
    "kj_mol": "kJ/mol",
    "kjmol-1": "kJ/mol",
    "hartree": "Hartree",
    "ha": "Hartree",
    "eh": "Hartree",
    "au": "Hartree",
}
_LENGTH_ALIASES = {
    "å": "Å",
    "a": "Å",
    "ang": "Å",
    "angstrom": "Å",
    "ångström": "Å",
    "bohr": "bohr",
    "a0": "bohr",
    "au": "bohr",
    "nm": "nm",
}


def _lookup(name: Any, table: dict[str, float], aliases: dict[str, str], kind: str) -> str:
    key = str(name).strip().replace(" ", "").lower()
    if key not in aliases:
        raise ValueError(f"unknown {kind} unit {name!r}; known {kind} units: {sorted(table)}")
    return aliases[key]


def energy_unit(name: Any) -> str:
    """Canonical name of an energy unit ("kcal/mol", "eV", ...); ValueError if unknown."""
    return _lookup(name, ENERGY_UNITS, _ENERGY_ALIASES, "energy")


def length_unit(name: Any) -> str:
    """Canonical name of a length unit ("Å", "bohr", "nm"); ValueError if unknown."""
    return _lookup(name, LENGTH_UNITS, _LENGTH_ALIASES, "length")


def canonical_unit(name: str, kind: str) -> str:
    """The canonical spelling of an energy or length unit.

    Args:
        name: a unit name, e.g. "kcal/mol", "ev", "Ha", "Ang", "bohr".
        kind: "energy" or "length".

    Raises:
        ValueError: the unit is unknown or not of that kind.
    """
    if kind not in ("energy", "length"):
        raise ValueError(f"kind must be 'energy' or 'length', got {kind!r}")
    return energy_unit(name) if kind == "energy" else length_unit(name)


def is_energy_unit(name: Any) -> bool:
    """Whether ``name`` is a known energy unit (any spelling ``energy_unit`` accepts)."""
    try:
        energy_unit(name)
    except ValueError:
        return False
    return True


def energy_factor(source: str, target: str) -> float:
    """Multiply an energy in ``source`` units by this to get ``target`` units."""
    return ENERGY_UNITS[energy_unit(source)] / ENERGY_UNITS[energy_unit(target)]


def length_factor(source: str, target: str) -> float:
    """Multiply a length in ``source`` units by this to get ``target`` units."""
    return LENGTH_UNITS[length_unit(source)] / LENGTH_UNITS[length_unit(target)]


def force_factor(energy_source: str, length_source: str, energy_target: str, length_target: str = "Å") -> float:
    """Multiply a force in ``energy_source/length_source`` by this to get ``energy_target/length_target``."""
    return energy_factor(energy_source, energy_target) / length_factor(length_source, length_target)


def milli(unit: str) -> tuple[float, str]:
    """(factor, name) for reporting errors of ``unit`` the way papers do: eV -> meV, else as is."""
    return (1000.0, "meV") if unit == "eV" else (1.0, unit)


@dataclass(frozen=True)
class UnitConversion:
    """Factors from a model's units to ASE units.

    Attributes:
        energy: eV per model energy unit.
        length: Å per model length unit (model positions = Å positions / length).
    """

    energy: float = 1.0
    length: float = 1.0

    @property
    def force(self) -> float:
        """(eV/Å) per (model energy / model length)."""
        return self.energy / self.length

    @property
    def stress(self) -> float:
        """(eV/Å³) per (model energy / model length³)."""
        return self.energy / self.length**3

    @classmethod
    def from_metadata(cls, units: Mapping[str, Any] | None) -> UnitConversion:
        """Factors for ``metadata["units"]``; missing entries mean eV and Å."""
        units = dict(units or {})
        energy = ENERGY_UNITS[energy_unit(units.get("energy", "eV"))]
        length = LENGTH_UNITS[length_unit(units.get("length", "Å"))]
        return cls(energy=energy, length=length)


# --------------------------------------------------------------------------- property units
# Debye per unit of dipole moment (ase.units.Debye is one Debye in e·Å).
DIPOLE_UNITS: dict[str, float] = {
    "D": 1.0,
    "e·Å": 1.0 / ase_units.Debye,
    "e·bohr": ase_units.Bohr / ase_units.Debye,
}
_DIPOLE_ALIASES = {
    "d": "D",
    "debye": "D",
    "e·å": "e·Å",
    "e*å": "e·Å",
    "eå": "e·Å",
    "e*a": "e·Å",
    "e·a": "e·Å",
    "e*ang": "e·Å",
    "e*angstrom": "e·Å",
    "e·bohr": "e·bohr",
    "e*bohr": "e·bohr",
    "ebohr": "e·bohr",
    "e*a0": "e·bohr",
}


def dipole_unit(name: Any) -> str:
    """Canonical name of a dipole-moment unit ("D", "e·Å", "e·bohr"); ValueError if unknown."""
    return _lookup(name, DIPOLE_UNITS, _DIPOLE_ALIASES, "dipole")


def is_dipole_unit(name: Any) -> bool:
    """Whether ``name`` is a known dipole-moment unit."""
    try:
        dipole_unit(name)
    except ValueError:
        return False
    return True


def reporting_unit(name: Any) -> tuple[float, str]:
    """(factor, unit) in which predictions of a quantity stored in unit ``name`` are reported.

    Energies (eV, kcal/mol, Hartree, ...) are reported in eV and dipole moments (D, e·Å, e·bohr)
    in Debye; any other unit (QM9's bohr^3, bohr^2, cal/(mol K), GHz) is kept as it is.
    ``value_reported = value * factor``.
    """
    if is_energy_unit(name):
        return ENERGY_UNITS[energy_unit(name)], "eV"
    if is_dipole_unit(name):
        return DIPOLE_UNITS[dipole_unit(name)], "D"
    return 1.0, str(name)
