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
"""

from __future__ import annotations

import torch
import torch_sim as ts
from torch_sim.models.interface import ModelInterface
from torch_sim.typing import StateDict

from visnet.integrations.engine_model import ModelSpec, check_species, load_engine_model


class ViSNetModel(ModelInterface):
    """A ViSNet energy model as a TorchSim model.

    Args:
        model: "default" (the bundled model), a model file path, or a ViSNet module (copied).
        device: torch device (None: CUDA when available, else CPU).
        dtype: "float64" (default) or "float32" (or the torch dtypes).
        compute_stress: return "stress" (S, 3, 3) eV/Å³ for periodic states. Default True.
        compute_forces: return "forces" (N, 3) eV/Å. Default True.
    """

    def __init__(
        self,
        model: ModelSpec = "default",
        device: str | torch.device | None = None,
        dtype: str | torch.dtype = "float64",
        *,
        compute_stress: bool = True,
        compute_forces: bool = True,
    ) -> None:
        super().__init__()
        engine = load_engine_model(model, device, dtype)
        self.model = engine.model
        self.units = engine.units
        self.elements = engine.elements
        self._device = engine.device
        self._dtype = engine.dtype
        self._compute_stress = compute_stress
        self._compute_forces = compute_forces
        self._memory_scales_with = "n_atoms_x_density"

    def forward(self, state: ts.SimState | StateDict, **kwargs: object) -> dict[str, torch.Tensor]:
        """Energy (S,) eV, forces (N, 3) eV/Å and, for periodic states, stress (S, 3, 3) eV/Å³; detached.

        Args:
            state: a SimState (or its dict) with positions (N, 3) Å, row_vector_cell (S, 3, 3) Å,
                pbc, atomic_numbers (N,) and system_idx (N,).
        """
        if isinstance(state, dict):
            state = ts.SimState(**{"masses": torch.ones_like(state["positions"][:, 0]), **state})
        check_species(state.atomic_numbers.tolist(), self.elements)
        conv = self.units
        pbc = torch.as_tensor(state.pbc, dtype=torch.bool, device=self._device).expand(3)
        periodic = bool(pbc.any())
        cell = state.row_vector_cell.to(self._dtype) / conv.length if periodic else None
        want_stress = self._compute_stress and periodic
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
