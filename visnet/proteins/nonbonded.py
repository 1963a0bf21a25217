"""Coulomb + Lennard-Jones between protein atoms, in float64: the exact all-pairs sum, or a
shifted-force cutoff form over a given pair list (linear in the atoms with a neighbour list).

Used for the interaction between protein atoms that share no AI2BMD unit. AI2BMD takes this term
from Amber's non-bonded parameters as a direct sum over all such pairs, no cutoff (``nonbonded``
here: O(N^2) work in row blocks of bounded memory, the excluded pairs subtracted afterwards).

The cutoff form (``nonbonded_cutoff``) replaces every pair potential u(r) = k q_i q_j / r +
4 eps ((s/r)^12 - (s/r)^6) inside the cutoff r_c by its shifted-force version

    u_sf(r) = u(r) - u(r_c) - (r - r_c) u'(r_c)    (r < r_c; 0 beyond)

so that energy and force both go to zero at r_c (no jump when a pair crosses it; forces stay
exactly -dE/dR). For Coulomb this is the damped shifted force of Fennell & Gezelter (J. Chem.
Phys. 124, 234104 (2006)) without damping. Approximated against the exact sum: the interaction
of atoms further apart than r_c, and near r_c a pair's energy is lowered by the shift (for a
neutral protein, whose Amber residues are nearly neutral, most of it cancels).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["COULOMB_EV_A", "pair_energies", "shifted_force_pair_energies", "nonbonded", "nonbonded_cutoff"]

COULOMB_EV_A = 14.399645478425668  # e^2 / (4 pi eps0) in eV Å
BLOCK_PAIRS = 2_000_000  # pairs per block: bounds the temporaries to ~100 MB

PairFunction = Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def pair_energies(vec: Tensor, qq: Tensor, sigma: Tensor, epsilon: Tensor) -> tuple[Tensor, Tensor]:
    """Energy (P,) eV and d(energy)/d(vec) (P, 3) eV/Å of pairs with vectors ``vec`` (P, 3) Å,
    charge products ``qq`` (P,) e², combined sigma (P,) Å and epsilon (P,) eV
    (E = qq k / r + 4 eps ((s/r)^12 - (s/r)^6))."""
    r2 = vec.square().sum(-1)
    energy, de_dr = _potential(r2.sqrt(), qq, sigma, epsilon)
    return energy, (de_dr / r2.sqrt()).unsqueeze(-1) * vec


def shifted_force_pair_energies(
    vec: Tensor, qq: Tensor, sigma: Tensor, epsilon: Tensor, cutoff: float
) -> tuple[Tensor, Tensor]:
    """As ``pair_energies`` with each pair potential shifted so that its energy and force vanish
    at ``cutoff`` Å (module docstring); pairs at or beyond the cutoff give 0."""
    r = vec.square().sum(-1).sqrt()
    energy, de_dr = _potential(r, qq, sigma, epsilon)
    at_cut, slope_at_cut = _potential(torch.full_like(r, cutoff), qq, sigma, epsilon)
    inside = r < cutoff
    energy = torch.where(inside, energy - at_cut - (r - cutoff) * slope_at_cut, 0.0)
    de_dr = torch.where(inside, de_dr - slope_at_cut, 0.0)
    return energy, (de_dr / r).unsqueeze(-1) * vec


def _potential(r: Tensor, qq: Tensor, sigma: Tensor, epsilon: Tensor) -> tuple[Tensor, Tensor]:
    """u(r) (P,) eV and du/dr (P,) eV/Å of Coulomb + LJ at distances ``r`` (P,) Å."""
    inv_r = 1.0 / r
    s6 = (sigma * inv_r) ** 6
    coulomb = COULOMB_EV_A * qq * inv_r
    energy = coulomb + 4.0 * epsilon * (s6 * s6 - s6)
    de_dr = (-coulomb - 24.0 * epsilon * (2.0 * s6 * s6 - s6)) * inv_r
    return energy, de_dr


def nonbonded(
    pos: Tensor, charges: Tensor, sigmas: Tensor, epsilons: Tensor, excluded: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Coulomb + LJ (Lorentz-Berthelot) over all pairs i < j except ``excluded``, no cutoff.

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
    params = (pos, charges, sigmas, epsilons)
    rows = max(1, BLOCK_PAIRS // max(n, 1))
    for start in range(0, n, rows):
        i = torch.arange(start, min(start + rows, n), device=pos.device)
        i, j = torch.meshgrid(i, torch.arange(n, device=pos.device), indexing="ij")
        keep = j > i
        _accumulate(pair_energies, params, i[keep], j[keep], 1.0, forces, per_atom)
    if len(excluded):
        _accumulate(pair_energies, params, excluded[:, 0], excluded[:, 1], -1.0, forces, per_atom)
    return per_atom.sum(), forces, per_atom


def nonbonded_cutoff(
    pos: Tensor, charges: Tensor, sigmas: Tensor, epsilons: Tensor, pairs: Tensor, cutoff: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Shifted-force Coulomb + LJ (module docstring) over the given ``pairs``.

    Args:
        pos, charges, sigmas, epsilons: as ``nonbonded``.
        pairs: (P, 2) int64 pairs i < j to sum, each once: those closer than ``cutoff`` that
            should interact (a neighbour list less the excluded pairs); pairs further apart add 0.
        cutoff: Å.

    Returns:
        energy () eV, forces (N, 3) eV/Å (= -dE/dpos), energies (N,) eV (pairs split half and half).
    """
    forces = torch.zeros_like(pos)
    per_atom = torch.zeros_like(charges)

    def pair_function(vec: Tensor, qq: Tensor, sigma: Tensor, epsilon: Tensor) -> tuple[Tensor, Tensor]:
        return shifted_force_pair_energies(vec, qq, sigma, epsilon, cutoff)

    for start in range(0, len(pairs), BLOCK_PAIRS):
        block = pairs[start : start + BLOCK_PAIRS]
        _accumulate(pair_function, (pos, charges, sigmas, epsilons), block[:, 0], block[:, 1], 1.0, forces, per_atom)
    return per_atom.sum(), forces, per_atom


def _accumulate(
    pair_function: PairFunction,
    params: tuple[Tensor, Tensor, Tensor, Tensor],
    i: Tensor,
    j: Tensor,
    sign: float,
    forces: Tensor,
    per_atom: Tensor,
) -> None:
    pos, q, s, e = params
    energy, grad = pair_function(pos[j] - pos[i], q[i] * q[j], 0.5 * (s[i] + s[j]), (e[i] * e[j]).sqrt())
    forces.index_add_(0, i, sign * grad)  # dE/dpos_i = -dE/dvec
    forces.index_add_(0, j, -sign * grad)
    half = 0.5 * sign * energy
    per_atom.index_add_(0, i, half)
    per_atom.index_add_(0, j, half)
