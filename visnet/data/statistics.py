"""Dataset statistics from the training split: per-element references, mean and scale.

* atom references: least squares of the target on the element counts (extensive targets only;
  for one fixed composition, as in MD17, the minimum-norm solution spreads the mean energy over
  the elements), or given free-atom energies;
* mean: 0 for extensive targets (a per-molecule constant would break size extensivity), else the
  mean of the target;
* std: the force RMS when training on forces (forces scale with the per-atom output), else the
  std of the residual per atom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visnet.data.structures import AtomsData


@dataclass
class Statistics:
    """Initial values for the model's prior and output scaling (units of the target).

    Attributes:
        atomref: (max_z,) per-element reference added to each atom's output.
        mean: added to each molecule's output.
        std: multiplies each atom's network output.
    """

    atomref: np.ndarray
    mean: float
    std: float


def element_counts(data: AtomsData, max_z: int) -> tuple[np.ndarray, np.ndarray]:
    """(counts (num_structures, num_elements), elements (num_elements,)) of the elements present."""
    if data.z.max(initial=0) >= max_z:
        raise ValueError(f"{data.source}: atomic number {int(data.z.max())} >= max_z={max_z}")
    elements, column = np.unique(data.z, return_inverse=True)
    molecule = np.repeat(np.arange(len(data)), data.natoms)
    counts = np.zeros((len(data), len(elements)), dtype=np.float64)
    np.add.at(counts, (molecule, column), 1.0)
    return counts, elements


def fit_atomref(data: AtomsData, max_z: int) -> np.ndarray:
    """(max_z,) least-squares per-element references: y ≈ counts @ atomref[elements]."""
    counts, elements = element_counts(data, max_z)
    solution, *_ = np.linalg.lstsq(counts, data.y, rcond=None)
    atomref = np.zeros(max_z)
    atomref[elements] = solution
    return atomref


def compute_statistics(
    data: AtomsData,
    max_z: int,
    extensive: bool,
    use_forces: bool,
    fit_references: bool = True,
    standardize: bool = True,
    atom_energies: dict[int, float] | None = None,
) -> Statistics:
    """Statistics of the training split ``data``.

    Args:
        data: the training structures.
        max_z: size of the element table.
        extensive: the target grows with size (energies): references fitted, mean 0.
        use_forces: training on forces: std is the force RMS.
        fit_references: fit per-element references (extensive targets only).
        standardize: compute ``std`` (else 1).
        atom_energies: given per-element references {Z: value} (replace the fit).

    Returns:
        ``Statistics`` in the units of the target.
    """
    atomref = np.zeros(max_z)
    if atom_energies:
        for z, value in atom_energies.items():
            if not 0 < int(z) < max_z:
                raise ValueError(f"atom_energies: atomic number {z} outside 1..{max_z - 1}")
            atomref[int(z)] = float(value)
    elif extensive and fit_references:
        atomref = fit_atomref(data, max_z)
    counts, elements = element_counts(data, max_z)
    residual = data.y - counts @ atomref[elements]
    mean = 0.0 if extensive else float(residual.mean())
    std = 1.0
    if standardize:
        if use_forces and data.forces is not None:
            std = float(np.sqrt(np.mean(data.forces**2)))
        else:
            std = float(np.std((residual - mean) / data.natoms))
    if not np.isfinite(std) or std <= 1e-12:
        std = 1.0
    return Statistics(atomref=atomref, mean=mean, std=std)
