"""TorchSim model: ``ViSNetModel``, a ``torch_sim.models.interface.ModelInterface``.

One call evaluates every system of a ``SimState`` (many molecules, or many periodic cells) as one
batched graph. TorchSim works in metal units (eV, Å, eV/Å, eV/Å³), as ASE does, and its stress
is ASE's: (1/V) dE/dε, positive when the cell wants to shrink (tensile); its NPT integrators take
the virial as −V·stress.

Example::

    import torch_sim as ts
    from visnet.integrations.torchsim import ViSNetModel

    model = ViSNetModel("default", device="cpu", dtype="float64")
    state = ts.integrate(molecules, model, integrator=ts.nvt_langevin, n_steps=100,
                         temperature=300.0, timestep=0.0005)   # timestep in ps

Written against the interface torch-sim-atomistic 0.3 and 0.4 share (``positions``,
``row_vector_cell``, ``pbc``, ``atomic_numbers``, ``system_idx``, ``n_systems``).

Partial periodicity: torch_sim 0.3 keeps one pbc flag per state, and ``ts.io.atoms_to_state``
stores ``all(atoms.pbc)``, so a slab's (True, True, False) arrives as False — indistinguishable
from molecules in a box. A state with a cell and that single False flag is therefore refused
unless the model was told the directions: ``ViSNetModel(..., pbc=(True, True, False))`` for slabs,
``pbc=False`` for molecules in a box. A per-direction pbc (3,) (later torch_sim) is used as given.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch_sim as ts
from torch_sim.models.interface import ModelInterface
from torch_sim.typing import StateDict

from visnet.inference.resolve import ModelSpec
from visnet.integrations.engine_model import check_species, load_engine_model


class ViSNetModel(ModelInterface):
    """A ViSNet energy model as a TorchSim model.

    Args:
        model: "default" (the bundled model), a model file path, an exported package, or a ViSNet
            module (copied).
        device: torch device (None: CUDA when available, else CPU).
        dtype: "float64" (default) or "float32" (or the torch dtypes).
        compute_stress: return "stress" (S, 3, 3) eV/Å³ for states periodic in all three
            directions (as ``ViSNetCalculator``: a slab's volume is mostly vacuum). Default True.
        compute_forces: return "forces" (N, 3) eV/Å. Default True.
        pbc: the periodic directions of every state this model sees (a bool or three), for states
            whose single pbc flag cannot say it (torch_sim 0.3 turns a slab's (True, True, False)
            into False). None (default): the state's pbc, refusing a state with a cell and one
            False flag. Given: a state's pbc must agree with it (its single flag = all(pbc)).
        trust_package: load an exported package (``.pt2``) not built on this machine (it runs
            native code; see ``visnet.accel.exported.load_exported``). Default False.
        accel: the model's form: "auto" (default: eager, then its exported package once ready,
            built in the background for long simulations), "eager", "compile" or "export".

    Raises:
        ValueError: ``pbc`` is not one or three booleans.
    """

    def __init__(
        self,
        model: ModelSpec = "default",
        device: str | torch.device | None = None,
        dtype: str | torch.dtype = "float64",
        *,
        compute_stress: bool = True,
        compute_forces: bool = True,
        pbc: bool | Sequence[bool] | None = None,
        trust_package: bool = False,
        accel: str = "auto",
    ) -> None:
        super().__init__()
        self._pbc = None if pbc is None else directions(pbc)
        engine = load_engine_model(model, device, dtype, trust_package, accel)
        self.model = engine.model
        self.units = engine.info.units
        self.elements = engine.info.elements
        self._device = engine.device
        self._dtype = engine.dtype
        self._compute_stress = compute_stress
        self._compute_forces = compute_forces
        self._memory_scales_with = "n_atoms_x_density"

    def forward(self, state: ts.SimState | StateDict, **kwargs: object) -> dict[str, torch.Tensor]:
        """Energy (S,) eV, forces (N, 3) eV/Å and, for 3D-periodic states, stress (S, 3, 3) eV/Å³; detached.

        Args:
            state: a SimState (or its dict) with positions (N, 3) Å, row_vector_cell (S, 3, 3) Å,
                pbc, atomic_numbers (N,) and system_idx (N,).

        Raises:
            ValueError: an element the model does not cover; a state whose periodic directions
                are ambiguous or contradict the model's ``pbc`` (see ``state_pbc``).
        """
        if isinstance(state, dict):
            state = ts.SimState(**{"masses": torch.ones_like(state["positions"][:, 0]), **state})
        check_species(state.atomic_numbers.tolist(), self.elements)
        conv = self.units
        pbc = self.state_pbc(state).to(self._device)
        periodic = bool(pbc.any())
        cell = state.row_vector_cell.to(self._dtype) / conv.length if periodic else None
        want_stress = self._compute_stress and bool(pbc.all())
        out = self.model(
            state.atomic_numbers,
            state.positions.to(self._dtype) / conv.length,
            batch=state.system_idx,
            cell=cell,
            pbc=pbc if periodic else None,
            compute_stress=want_stress,
        )
        results = {"energy": out["energy"].detach() * conv.energy}
        if self._compute_forces:
            results["forces"] = out["forces"].detach() * conv.force
        if want_stress:
            results["stress"] = out["stress"].detach() * conv.stress
        return results

    def state_pbc(self, state: ts.SimState) -> torch.Tensor:
        """The periodic directions (3,) bool of ``state``: the model's ``pbc`` when given (checked
        against the state's), else the state's own.

        Raises:
            ValueError: one False flag with a non-zero cell and no ``pbc`` given (a slab whose
                partial pbc torch_sim 0.3 dropped, or molecules in a box: which is unknown); a
                state's pbc that contradicts the model's ``pbc``.
        """
        flags = torch.as_tensor(state.pbc, dtype=torch.bool).cpu()
        if flags.numel() not in (1, 3):
            raise ValueError(f"the state's pbc must be one or three booleans, got shape {tuple(flags.shape)}")
        single = flags.numel() == 1
        if self._pbc is None:
            if single and not bool(flags) and bool(state.cell.any()):
                raise ValueError(
                    "the state has a cell but pbc=False: torch_sim 0.3 keeps one pbc flag and turns a slab's "
                    "(True, True, False) into False; say which directions are periodic with "
                    "ViSNetModel(..., pbc=(True, True, False)) for a slab, or pbc=False for molecules in a box"
                )
            return flags.reshape(-1).expand(3)
        agrees = bool(flags) == bool(self._pbc.all()) if single else torch.equal(flags.reshape(3), self._pbc)
        if not agrees:
            raise ValueError(
                f"the state's pbc {flags.reshape(-1).tolist()} contradicts ViSNetModel(pbc={self._pbc.tolist()})"
            )
        return self._pbc


def directions(pbc: bool | Sequence[bool]) -> torch.Tensor:
    """``pbc`` (a bool, or one per cell vector) as a (3,) bool tensor.

    Raises:
        ValueError: not one or three booleans.
    """
    message = f"pbc must be a bool or three bools (one per cell vector), got {pbc!r}"
    try:
        flags = torch.as_tensor(pbc)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(message) from None
    if flags.dtype != torch.bool or flags.numel() not in (1, 3):
        raise ValueError(message)
    return flags.reshape(-1).expand(3).clone()
