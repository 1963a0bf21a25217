"""Radial functions of the ViSNet model: the cutoff envelopes (cosine, polynomial) and the radial
basis expansions."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class CosineCutoff(nn.Module):
    r"""Smooth cutoff :math:`f(r) = \tfrac12(\cos(\pi r / r_c) + 1)` for :math:`r < r_c`, else 0.

    Its value and first derivative vanish at :math:`r_c`; the second jumps there by
    :math:`\pi^2 / (2 r_c^2)` (a kink in forces: use ``PolynomialCutoff`` for Hessians).

    Args:
        cutoff: cutoff radius :math:`r_c` in Å.
    """

    def __init__(self, cutoff: float) -> None:
        super().__init__()
        self.cutoff = float(cutoff)

    def forward(self, distances: Tensor) -> Tensor:
        """distances: (...) Å -> cutoff weights (...) in [0, 1], same dtype."""
        inside = (distances < self.cutoff).to(distances.dtype)
        return 0.5 * (torch.cos(distances * (math.pi / self.cutoff)) + 1.0) * inside


# Exponent p of the polynomial envelope. Its value and first two derivatives vanish at r_c for every
# p (u'(x) = -p(p+1)(p+2)/2 x^(p-1) (1-x)^2 has a double root at x = 1), so energies are C2 and
# forces C1 across r_c; the third derivative jumps by p(p+1)(p+2)/r_c^3. At r = 0 u = 1 with its
# first p-1 derivatives zero: p >= 2 keeps the envelope flat there. p = 6 is NequIP's default
# (PolynomialCutoff) and DimeNet's (envelope_exponent 5, p = exponent + 1); it stays close to 1
# over the short range (u(r_c/2) = 0.86, cosine 0.5) and falls at most 2.55/r_c steeply (cosine
# pi/(2 r_c) = 1.57/r_c); larger p pushes the fall ever closer to r_c.
POLYNOMIAL_EXPONENT = 6


class PolynomialCutoff(nn.Module):
    r"""Smooth polynomial envelope of DimeNet (Klicpera et al., ICLR 2020) and NequIP,
    :math:`u(x) = 1 - \tfrac{(p+1)(p+2)}{2} x^p + p(p+2) x^{p+1} - \tfrac{p(p+1)}{2} x^{p+2}`,
    :math:`x = r / r_c`, for :math:`r < r_c`, else 0.

    Its value and first two derivatives vanish at :math:`r_c` (energy C2, forces C1 across the
    cutoff, so Hessians and vibrational frequencies see no kink); ``POLYNOMIAL_EXPONENT`` explains p.

    Args:
        cutoff: cutoff radius :math:`r_c` in Å.
        exponent: p, an integer >= 2. Default ``POLYNOMIAL_EXPONENT``.
    """

    def __init__(self, cutoff: float, exponent: int = POLYNOMIAL_EXPONENT) -> None:
        super().__init__()
        if exponent < 2:
            raise ValueError(f"the polynomial cutoff exponent must be >= 2, got {exponent}")
        self.cutoff = float(cutoff)
        self.exponent = int(exponent)

    def forward(self, distances: Tensor) -> Tensor:
        """distances: (...) Å -> cutoff weights (...) in [0, 1], same dtype."""
        x = distances / self.cutoff
        inside = (x < 1.0).to(distances.dtype)
        x = x * inside  # beyond r_c evaluate at 0: no overflow of x^k for far pairs
        # The same polynomial factored as (1-x)^3 * sum_{k<p} (k+1)(k+2)/2 x^k (Horner): no
        # cancellation of its O(p^2) coefficients near r_c, where it is tiny
        p = self.exponent
        series = torch.full_like(x, 0.5 * p * (p + 1))
        for k in range(p - 1, 0, -1):  # coefficient of x^(k-1): k(k+1)/2
            series = series * x + 0.5 * k * (k + 1)
        return (1.0 - x) ** 3 * series * inside


CUTOFF_CLASSES = {"cosine": CosineCutoff, "polynomial": PolynomialCutoff}


def make_cutoff(cutoff_type: str, cutoff: float) -> nn.Module:
    """The cutoff envelope ``cutoff_type`` ("cosine" or "polynomial") with radius ``cutoff`` Å."""
    if cutoff_type not in CUTOFF_CLASSES:
        raise ValueError(f"cutoff_type must be one of {sorted(CUTOFF_CLASSES)}, got {cutoff_type!r}")
    return CUTOFF_CLASSES[cutoff_type](cutoff)


class ExpNormalSmearing(nn.Module):
    r"""Exponential-normal radial basis (PhysNet):
    :math:`f_{cut}(r)\,\exp(-\beta_k (e^{-\alpha r} - \mu_k)^2)` with :math:`\alpha = 5 / r_c`.

    Args:
        cutoff: cutoff radius in Å.
        num_rbf: number of basis functions K.
        trainable: make the centres :math:`\mu_k` and widths :math:`\beta_k` trainable.
        cutoff_type: envelope :math:`f_{cut}`, "cosine" (default, as the paper) or "polynomial".
    """

    def __init__(
        self, cutoff: float = 5.0, num_rbf: int = 32, trainable: bool = False, cutoff_type: str = "cosine"
    ) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.num_rbf = num_rbf
        self.alpha = 5.0 / self.cutoff
        self.cutoff_fn = make_cutoff(cutoff_type, cutoff)
        means, betas = self._initial_params()
        if trainable:
            self.means = nn.Parameter(means)
            self.betas = nn.Parameter(betas)
        else:
            self.register_buffer("means", means)
            self.register_buffer("betas", betas)

    def _initial_params(self) -> tuple[Tensor, Tensor]:
        start = math.exp(-self.cutoff)
        means = torch.linspace(start, 1.0, self.num_rbf)
        betas = torch.full((self.num_rbf,), (2.0 / self.num_rbf * (1.0 - start)) ** -2)
        return means, betas

    def reset_parameters(self) -> None:
        means, betas = self._initial_params()
        with torch.no_grad():
            self.means.copy_(means)
            self.betas.copy_(betas)

    def forward(self, distances: Tensor) -> Tensor:
        """distances: (E,) Å -> basis values (E, num_rbf)."""
        d = distances.unsqueeze(-1)
        return self.cutoff_fn(d) * torch.exp(-self.betas * (torch.exp(-self.alpha * d) - self.means) ** 2)


class GaussianSmearing(nn.Module):
    r"""Gaussian radial basis :math:`f_{cut}(r)\exp(-\gamma (r - \mu_k)^2)`, centres evenly
    spaced on :math:`[0, r_c]`.

    Args:
        cutoff: cutoff radius in Å.
        num_rbf: number of basis functions K.
        trainable: make the centres and the width trainable.
        cutoff_type: envelope :math:`f_{cut}`, "cosine" (default, as the paper) or "polynomial".
    """

    def __init__(
        self, cutoff: float = 5.0, num_rbf: int = 32, trainable: bool = False, cutoff_type: str = "cosine"
    ) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.num_rbf = num_rbf
        self.cutoff_fn = make_cutoff(cutoff_type, cutoff)
        means, coeff = self._initial_params()
        if trainable:
            self.means = nn.Parameter(means)
            self.coeff = nn.Parameter(coeff)
        else:
            self.register_buffer("means", means)
            self.register_buffer("coeff", coeff)

    def _initial_params(self) -> tuple[Tensor, Tensor]:
        means = torch.linspace(0.0, self.cutoff, self.num_rbf)
        spacing = self.cutoff / max(self.num_rbf - 1, 1)
        return means, torch.tensor(-0.5 / spacing**2)

    def reset_parameters(self) -> None:
        means, coeff = self._initial_params()
        with torch.no_grad():
            self.means.copy_(means)
            self.coeff.copy_(coeff)

    def forward(self, distances: Tensor) -> Tensor:
        """distances: (E,) Å -> basis values (E, num_rbf)."""
        d = distances.unsqueeze(-1)
        return self.cutoff_fn(d) * torch.exp(self.coeff * (d - self.means) ** 2)


RBF_CLASSES = {"expnorm": ExpNormalSmearing, "gauss": GaussianSmearing}
