"""Coulomb + Lennard-Jones between atom pairs, all pairs minus an exclusion list, in float64.

Used for the interaction between protein atoms that share no AI2BMD unit (AI2BMD takes the same
term from Amber's non-bonded parameters). Direct sum, no cutoff (a molecule in vacuum): O(N^2)
work in row blocks of bounded memory; the excluded pairs are subtracted afterwards.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["COULOMB_EV_A", "pair_energies", "nonbonded"]

COULOMB_EV_A = 14.399645478425668  # e^2 / (4 pi eps0) in eV Å
BLOCK_PAIRS = 2_000_000  # pairs per block: bounds the temporaries to ~100 MB


def pair_energies(vec: Tensor, qq: Tensor, sigma: Tensor, epsilon: Tensor) -> tuple[Tensor, Tensor]:
    """Energy (P,) eV and d(energy)/d(vec) (P, 3) eV/Å of pairs with vectors ``vec`` (P, 3) Å,
    charge products ``qq`` (P,) e², combined sigma (P,) Å and epsilon (P,) eV
    (E = qq k / r + 4 eps ((s/r)^12 - (s/r)^6))."""
    r2 = vec.square().sum(-1)
    inv_r2 = 1.0 / r2
    inv_r = inv_r2.sqrt()
    s6 = (sigma.square() * inv_r2) ** 3
    coulomb = COULOMB_EV_A * qq * inv_r
    energy = coulomb + 4.0 * epsilon * (s6 * s6 - s6)
    # dE/dr / r, so that dE/dvec = (dE/dr / r) vec
    de_dr_over_r = (-coulomb - 24.0 * epsilon * (2.0 * s6 * s6 - s6)) * inv_r2
    return energy, de_dr_over_r.unsqueeze(-1) * vec


def nonbonded(
    pos: Tensor, charges: Tensor, sigmas: Tensor, epsilons: Tensor, excluded: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Coulomb + LJ (Lorentz-Berthelot) over all pairs i < j except ``excluded``.

    Args:
        pos: (N, 3) Å. charges: (N,) e. sigmas: (N,) Å. epsilons: (N,) eV (all float64).
        excluded: (P, 2) int64 pairs i < j left out (each listed once).

    Returns:
        energy () eV, forces (N, 3) eV/Å (= -dE/dpos), energies (N,) eV (each pair's energy split
        half and half between its atoms).
    """
    n = len(pos)
    forces = torch.zeros_like(pos)
    per_atom = torch.zeros_like(charges)
    rows = max(1, BLOCK_PAIRS // max(n, 1))
    for start in range(0, n, rows):
        i = torch.arange(start, min(start + rows, n), device=pos.device)
        i, j = torch.meshgrid(i, torch.arange(n, device=pos.device), indexing="ij")
        keep = j > i
        _accumulate(pos, charges, sigmas, epsilons, i[keep], j[keep], 1.0, forces, per_atom)
    if len(excluded):
        _accumulate(pos, charges, sigmas, epsilons, excluded[:, 0], excluded[:, 1], -1.0, forces, per_atom)
    return per_atom.sum(), forces, per_atom


def _accumulate(
    pos: Tensor, q: Tensor, s: Tensor, e: Tensor, i: Tensor, j: Tensor, sign: float, forces: Tensor, per_atom: Tensor
) -> None:
    energy, grad = pair_energies(pos[j] - pos[i], q[i] * q[j], 0.5 * (s[i] + s[j]), (e[i] * e[j]).sqrt())
    forces.index_add_(0, i, sign * grad)  # dE/dpos_i = -dE/dvec
    forces.index_add_(0, j, -sign * grad)
    half = 0.5 * sign * energy
    per_atom.index_add_(0, i, half)
    per_atom.index_add_(0, j, half)
