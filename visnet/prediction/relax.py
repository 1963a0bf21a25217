"""``predict(..., relax=True)``: relax each structure with the energy model (ASE BFGS) before predicting."""

from __future__ import annotations

import numpy as np

from visnet.inference.calculator import ViSNetCalculator
from visnet.prediction.inputs import PendingStructure, fail_structure
from visnet.prediction.property_models import PropertyModel

__all__ = ["relax_structures", "relaxation_model"]


def relaxation_model(models: list[PropertyModel]) -> PropertyModel:
    """The first energy model (a potential) of ``models``."""
    for m in models:
        if m.info.is_energy_model:
            return m
    raise ValueError(f"relax=True needs an energy model; the model(s) {[m.label for m in models]} predict no energy")


def relax_structures(
    structures: list[PendingStructure], model: PropertyModel, fmax: float, steps: int, errors: str, progress: bool
) -> None:
    """Relax every structure in place with ``model`` (ASE BFGS until max |F| < ``fmax`` eV/Å)."""
    from ase.optimize import BFGS
    from tqdm.auto import tqdm

    calc = ViSNetCalculator(model=model.model, device=model.model.device, dtype=model.model.dtype)
    for s in tqdm([s for s in structures if s.error is None], desc="relaxing", unit="mol", disable=not progress):
        atoms = s.atoms.copy()
        atoms.calc = calc
        try:
            optimizer = BFGS(atoms, logfile=None)
            converged = bool(optimizer.run(fmax=fmax, steps=steps))
            final = float(np.linalg.norm(atoms.get_forces(), axis=1).max())
        except (ValueError, FloatingPointError) as err:
            fail_structure(s, err, errors)
            continue
        atoms.calc = None
        s.atoms = atoms
        s.info["relaxation"] = {
            "model": model.label,
            "steps": int(optimizer.nsteps),
            "fmax": final,
            "converged": converged,
        }
