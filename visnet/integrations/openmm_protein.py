"""A protein in OpenMM by AI2BMD fragmentation: the ``visnet`` potential with ``fragmentation="ai2bmd"``.

The ML atoms (a whole protein, or the protein of an ML/MM system) become ``ase.Atoms`` with residue
arrays read from the OpenMM topology, evaluated by ``ViSNetCalculator(fragmentation="ai2bmd")`` in an
``openmm.PythonForce``: the units' ML energy plus the Amber14 Coulomb + LJ term between atoms that
share no unit (``visnet.inference.fragmented``). The Amber parameters come from the system's
``NonbondedForce`` (ML/MM: ``createMixedSystem`` has zeroed every ML-ML pair there, so the
fragmented force adds them back only between units), or from ``amber14-all.xml`` for a protein
alone (``createSystem``). The protein is evaluated as a molecule (its own periodic images are far
away in a solvated box); its interaction with water and ions stays the MM force field's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import openmm
from ase import Atoms
from ase import units as ase_units
from openmm import app, unit

from visnet.inference.calculator import ViSNetCalculator
from visnet.proteins.forcefield import KJ_PER_MOL_IN_EV, MM_ARRAYS, attach_amber_parameters
from visnet.proteins.reading import atoms_from_openmm

__all__ = ["fragmented_protein_force"]

KJ_PER_MOL_PER_EV = ase_units.mol / ase_units.kJ  # 96.485... kJ/mol in one eV
ANGSTROM_PER_NM = 10.0


def fragmented_protein_force(
    topology: app.Topology, system: openmm.System, atoms: list[int] | None, calculator_args: dict[str, Any]
) -> openmm.PythonForce:
    """A ``PythonForce`` on ``atoms`` (None: all) of ``topology``: the fragmented protein.

    Args:
        topology: the (solvated) topology; the selected atoms must form whole standard residues.
        system: the system the force joins: its ``NonbondedForce``, when there is one, gives the
            Amber parameters.
        atoms: indices of the protein's atoms; None: every atom.
        calculator_args: ``ViSNetCalculator`` arguments (model, device, dtype, fragmentation,
            nonbonded, nonbonded_cutoff, accel, trust_package).

    Raises:
        ValueError: as ``ViSNetCalculator`` (elements the model lacks, named), here; the residue
            checks of ``ProteinTopology`` (bonds come from distances) at the first evaluation.
    """
    indices = list(range(topology.getNumAtoms())) if atoms is None else list(atoms)
    protein = atoms_from_openmm(topology, None, indices)
    if calculator_args.get("nonbonded", "amber14") is not None:
        _attach_parameters(protein, topology, system, indices)
    calculator = ViSNetCalculator(**calculator_args)
    calculator.check_atoms(protein)  # elements now; residues and bonds need positions: at the first call
    force = openmm.PythonForce(lambda state: _compute(state, protein, calculator))
    if atoms is not None:
        force.setParticles(indices)
    return force


def _attach_parameters(protein: Atoms, topology: app.Topology, system: openmm.System, indices: list[int]) -> None:
    nonbonded = next((f for f in system.getForces() if isinstance(f, openmm.NonbondedForce)), None)
    if nonbonded is None:
        attach_amber_parameters(protein, _subset(topology, indices))
        return
    params = np.array(
        [
            [
                q.value_in_unit(unit.elementary_charge),
                s.value_in_unit(unit.angstrom),
                e.value_in_unit(unit.kilojoule_per_mole) * KJ_PER_MOL_IN_EV,
            ]
            for q, s, e in map(nonbonded.getParticleParameters, indices)
        ]
    )
    for name, values in zip(MM_ARRAYS, params.T):
        protein.set_array(name, values)


def _subset(topology: app.Topology, indices: list[int]) -> app.Topology:
    """``topology`` itself when ``indices`` are all its atoms (the Amber templates need them all)."""
    if indices != list(range(topology.getNumAtoms())):
        raise ValueError(
            "fragmentation of part of a system needs its MM NonbondedForce for the Amber parameters "
            "(use createMixedSystem with an Amber14 system)"
        )
    return topology


def _compute(state: openmm.State, protein: Atoms, calculator: ViSNetCalculator) -> tuple[float, np.ndarray]:
    """Energy (kJ/mol) and forces ((n, 3) kJ/mol/nm) of the protein in ``state``."""
    protein.positions = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)) * ANGSTROM_PER_NM
    calculator.calculate(protein, ["energy", "forces"])
    energy = float(calculator.results["energy"]) * KJ_PER_MOL_PER_EV
    return energy, calculator.results["forces"] * (KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM)
