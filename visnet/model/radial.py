"""Radial functions of the ViSNet model: the cosine cutoff and the radial basis expansions."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class CosineCutoff(nn.Module):
    r"""Smooth cutoff :math:`f(r) = \tfrac12(\cos(\pi r / r_c) + 1)` for :math:`r < r_c`, else 0.

    Its value and first derivative vanish at :math:`r_c`.

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


class ExpNormalSmearing(nn.Module):
    r"""Exponential-normal radial basis (PhysNet):
    :math:`f_{cut}(r)\,\exp(-\beta_k (e^{-\alpha r} - \mu_k)^2)` with :math:`\alpha = 5 / r_c`.

    Args:
        cutoff: cutoff radius in Å.
        num_rbf: number of basis functions K.
        trainable: make the centres :math:`\mu_k` and widths :math:`\beta_k` trainable.
    """

    def __init__(self, cutoff: float = 5.0, num_rbf: int = 32, trainable: bool = False) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.num_rbf = num_rbf
        self.alpha = 5.0 / self.cutoff
        self.cutoff_fn = CosineCutoff(cutoff)
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
    """

    def __init__(self, cutoff: float = 5.0, num_rbf: int = 32, trainable: bool = False) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.num_rbf = num_rbf
        self.cutoff_fn = CosineCutoff(cutoff)
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
