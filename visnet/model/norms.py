"""Norms of vectors: exact (edge lengths) and smooth at zero (learned vector features).

A learned vector feature vanishes wherever symmetry forces it to (the carbon of methane, an atom
of a perfect crystal). The exact norm |v| is a cone there: the energy gets a cusp, autograd forces
jump across the symmetric point and are not −dE/dR (the one-sided finite differences of the
bundled model at methane's carbon were ±0.98 eV/Å). ``smooth_norm`` equals |v| wherever
|v| ≥ eps and replaces the tip of the cone by a quadratic in |v|² that matches value, first and
second derivative at |v| = eps (C2) and is 0 at 0, so energies have no cusp there and the
value at the symmetric point itself is unchanged. ``smooth_floor`` is the variant for
denominators (v / |v| directions), bounded away from zero.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Smoothing radius of ``smooth_norm`` in feature units. Measured on the bundled model: per-channel
# norms of the output head's vector features have a median of 0.1-0.2 and a per-atom minimum of
# ~0.03 on rMD17 molecules, and grow by ~0.8 per Å of displacement from methane's carbon. With
# 3e-2 energies of 20 rMD17 frames of aspirin and ethanol change by < 0.4 meV and forces by
# < 2 meV/Å (the model's errors: 28 meV, 31 meV/Å), and ASE's BFGS relaxes perturbed methane in
# 13 steps; with 1e-2 the rounded tip is so stiff (~600 eV/Å²) that BFGS oscillates (300 steps,
# fmax 0.6 eV/Å), as it does with the exact norm.
VECTOR_NORM_EPS = 3e-2


def safe_norm(x: Tensor, dim: int, keepdim: bool = False) -> Tensor:
    """Exact Euclidean norm along ``dim`` whose gradient (and second derivative) is 0, not NaN, at 0.

    For geometric vectors (edge vectors), where a zero only occurs for self-loops that are masked.
    """
    sq = (x * x).sum(dim=dim, keepdim=keepdim)
    positive = sq > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), torch.zeros_like(sq))


def smooth_floor(sq: Tensor, eps: float = VECTOR_NORM_EPS) -> Tensor:
    """A norm for denominators: √sq for sq ≥ eps², else eps·(3/8 + 3/4·s − 1/8·s²), s = sq/eps².

    C2 at sq = eps², smooth in the vector at zero and never below 3/8·eps, so v / smooth_floor(|v|²)
    is smooth and → 0 as v → 0. ``eps=0`` gives the exact √sq.

    Args:
        sq: any shape, ≥ 0: a squared norm.
        eps: smoothing radius (units of √sq).
    """
    if eps <= 0:
        return torch.sqrt(sq)
    inside = sq < eps * eps
    s = sq / (eps * eps)
    tip = eps * (0.375 + s * (0.75 - 0.125 * s))
    return torch.where(inside, tip, torch.sqrt(torch.where(inside, torch.ones_like(sq), sq)))


def smooth_norm(x: Tensor, dim: int, keepdim: bool = False, eps: float = VECTOR_NORM_EPS) -> Tensor:
    """Norm of ``x`` along ``dim``: exact where ≥ eps, C2-smooth (no cone) and 0 at zero.

    Below eps it is eps·(15/8·s − 5/4·s² + 3/8·s³) with s = |x|²/eps²: value, first and second
    derivative match |x| at |x| = eps, it is increasing, and it is 0 at 0, so isolated atoms (all
    vectors zero) keep exactly the values they have with the exact norm. ``eps=0``: the exact norm
    (the reference code's cone; kept for imported weights).

    Args:
        x: any shape; dim: the vector axis; keepdim: keep it with size 1.
        eps: smoothing radius (units of x).
    """
    if eps <= 0:
        return safe_norm(x, dim=dim, keepdim=keepdim)
    sq = (x * x).sum(dim=dim, keepdim=keepdim)
    inside = sq < eps * eps
    s = sq / (eps * eps)
    tip = eps * s * (1.875 + s * (-1.25 + 0.375 * s))
    return torch.where(inside, tip, torch.sqrt(torch.where(inside, torch.ones_like(sq), sq)))
