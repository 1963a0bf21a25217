"""OpenMM potential ``visnet``: ``openmmml.MLPotential("visnet", model=...)``.

Registered through the ``openmmml.potentials`` entry point (the mechanism openmm-ml's own MACE,
NequIP and TorchMD-Net potentials use) and evaluated in an ``openmm.PythonForce`` (openmm ≥ 8.5).
Positions arrive in nm and leave the model in Å; energies leave in kJ/mol, forces in kJ/mol/nm.

Example:
    ```python
    from openmmml import MLPotential
    potential = MLPotential("visnet")                   # the bundled default model
    potential = MLPotential("visnet", model="x.pt")     # any model file
    system = potential.createSystem(topology, device="cpu", dtype="float64")
    mixed = potential.createMixedSystem(topology, mm_system, ml_atoms)   # ML/MM
    ```

Options (constructor or ``createSystem``/``createMixedSystem``; the latter win): ``device``
("cpu", "cuda", default: CUDA when available), ``dtype`` ("float64" default, or "float32"); and
``trust_package`` (constructor only): load an exported package (``.pt2``) not built on this
machine, which runs its native code (see ``visnet.accel.exported.load_exported``); ``accel``
("auto" default: eager, then the model's exported package once ready, built in the background
for long simulations; "eager", "compile", "export"; ``visnet.inference.resolve.resolve_models``).
A periodic topology (or a system with periodic forces) is evaluated in the state's box.

``fragmentation="ai2bmd"`` (constructor or ``createSystem``/``createMixedSystem``) evaluates a
protein as AI2BMD units plus the Amber14 term between units (``nonbonded`` "amber14" or None,
``nonbonded_cutoff`` Å or None), through ``ViSNetCalculator``
(``visnet.integrations.openmm_protein``): e.g. the protein of a solvated system in ML/MM.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

import numpy as np
import openmm
import torch
from ase import units as ase_units
from openmm import app, unit
from openmmml.mlpotential import MLPotentialImpl, MLPotentialImplFactory

from visnet.inference.fragmented import DEFAULT_NONBONDED_CUTOFF, FRAGMENTATIONS, check_nonbonded_cutoff
from visnet.inference.resolve import ModelSpec, ResolvedModel, resolve_accel, resolve_placement
from visnet.integrations.engine_model import check_species, load_engine_model
from visnet.integrations.openmm_protein import fragmented_protein_force

KJ_PER_MOL_PER_EV = ase_units.mol / ase_units.kJ  # 96.485... kJ/mol in one eV
ANGSTROM_PER_NM = 10.0


class ViSNetPotentialImplFactory(MLPotentialImplFactory):
    """Creates ``ViSNetPotentialImpl`` objects for the ``visnet`` entry point."""

    def createImpl(self, name: str, model: ModelSpec = "default", **args: Any) -> MLPotentialImpl:  # noqa: N802
        """``MLPotential(name, model=..., device=..., dtype=..., trust_package=..., accel=...)`` lands here."""
        return ViSNetPotentialImpl(name, model, **args)


class ViSNetPotentialImpl(MLPotentialImpl):
    """Adds a ViSNet model to an OpenMM ``System`` as a ``PythonForce``.

    Args:
        name: the name given to ``MLPotential`` ("visnet").
        model: "default" (bundled model), a model file path, an exported package, or a ViSNet module.
        device: default torch device ("cpu", "cuda"; None: CUDA when available).
        dtype: default floating-point type, "float64" or "float32".
        trust_package: load an exported package not built on this machine (it runs native code).
        accel: the model's form: "auto" (default), "eager", "compile" or "export".
        fragmentation: None (one model call on the ML atoms) or "ai2bmd" (a protein in units).
        nonbonded: with fragmentation, the term between units: "amber14" (default) or None.
        nonbonded_cutoff: with fragmentation, that term's shifted-force cutoff in Å (None: the
            exact all-pairs sum), as ``ViSNetCalculator``.

    Raises:
        ValueError: a device this machine lacks (CUDA on a CPU-only torch, ...), a bad dtype, accel,
            fragmentation or cutoff.
    """

    def __init__(
        self,
        name: str,
        model: ModelSpec = "default",
        device: str | None = None,
        dtype: str = "float64",
        trust_package: bool = False,
        accel: str = "auto",
        fragmentation: str | None = None,
        nonbonded: str | None = "amber14",
        nonbonded_cutoff: float | None = DEFAULT_NONBONDED_CUTOFF,
    ) -> None:
        resolve_placement(device, dtype)  # a bad device or dtype fails here, in one line
        resolve_accel(accel)
        _check_fragmentation(fragmentation)
        self.fragmentation = fragmentation
        self.nonbonded = nonbonded
        self.nonbonded_cutoff = check_nonbonded_cutoff(nonbonded_cutoff)
        self.name = name
        self.model = model
        self.device = device
        self.dtype = dtype
        self.trust_package = trust_package
        self.accel = accel

    def getMLLongRange(self) -> bool:  # noqa: N802
        """ViSNet is local (a radial cutoff, no long-range electrostatics) in periodic systems too."""
        return False

    def addForces(  # noqa: N802
        self,
        topology: app.Topology,
        system: openmm.System,
        atoms: Iterable[int] | None,
        forceGroup: int,  # noqa: N803
        device: str | None = None,
        dtype: str | None = None,
        accel: str | None = None,
        fragmentation: str | None = None,
        **args: Any,
    ) -> None:
        """Add the ViSNet force for ``atoms`` (None: all) of ``topology`` to ``system``."""
        accel = accel or self.accel
        fragmentation = fragmentation or self.fragmentation
        if fragmentation is not None:
            _check_fragmentation(fragmentation)
            calculator_args = dict(
                model=self.model,
                device=device or self.device,
                dtype=dtype or self.dtype,
                trust_package=self.trust_package,
                accel=accel,
                fragmentation=fragmentation,
                nonbonded=args.get("nonbonded", self.nonbonded),
                nonbonded_cutoff=check_nonbonded_cutoff(args.get("nonbonded_cutoff", self.nonbonded_cutoff)),
            )
            force = fragmented_protein_force(topology, system, None if atoms is None else list(atoms), calculator_args)
            force.setForceGroup(forceGroup)
            system.addForce(force)
            return
        engine = load_engine_model(self.model, device or self.device, dtype or self.dtype, self.trust_package, accel)
        selected = list(topology.atoms())
        if atoms is not None:
            atoms = list(atoms)
            selected = [selected[i] for i in atoms]
        numbers = [0 if atom.element is None else atom.element.atomic_number for atom in selected]
        names = [f"atom {atom.index} ({atom.name} in {atom.residue.name} {atom.residue.id})" for atom in selected]
        check_species(numbers, engine.info.elements, names)
        z = torch.tensor(numbers, dtype=torch.long, device=engine.device)
        periodic = topology.getPeriodicBoxVectors() is not None or system.usesPeriodicBoundaryConditions()
        force = openmm.PythonForce(partial(compute_visnet, engine=engine, z=z, periodic=periodic))
        force.setForceGroup(forceGroup)
        force.setUsesPeriodicBoundaryConditions(periodic)
        if atoms is not None:
            force.setParticles(atoms)
        system.addForce(force)


def _check_fragmentation(fragmentation: str | None) -> None:
    if fragmentation is not None and fragmentation not in FRAGMENTATIONS:
        raise ValueError(f"fragmentation must be None or one of {FRAGMENTATIONS}, got {fragmentation!r}")


def compute_visnet(state: openmm.State, engine: ResolvedModel, z: torch.Tensor, periodic: bool) -> tuple[float, Any]:
    """Energy (kJ/mol) and forces ((n, 3) kJ/mol/nm) of the ML particles in ``state``."""
    units = engine.info.units
    to_model = ANGSTROM_PER_NM / units.length  # model length units per nm
    positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer) * to_model
    pos = torch.as_tensor(np.asarray(positions), dtype=engine.dtype, device=engine.device)
    cell = pbc = None
    if periodic:
        box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer) * to_model
        cell = torch.as_tensor(np.asarray(box), dtype=engine.dtype, device=engine.device)
        pbc = torch.ones(3, dtype=torch.bool, device=engine.device)
    out = engine.model(z, pos, cell=cell, pbc=pbc)
    energy = float(out["energy"][0].detach()) * units.energy * KJ_PER_MOL_PER_EV
    forces = out["forces"].detach().to("cpu", torch.float64).numpy() * (
        units.force * KJ_PER_MOL_PER_EV * ANGSTROM_PER_NM
    )
    return energy, forces
