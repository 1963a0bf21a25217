"""Layer normalisation of the equivariant vector features (VecLayerNorm)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visnet.model.norms import VECTOR_NORM_EPS, smooth_floor

VECNORM_TYPES = ("none", "max_min", "rms")
# Floor of the exact norms when ``norm_eps=0`` (the reference code's clamp).
EXACT_FLOOR = 1e-12


class VecLayerNorm(nn.Module):
    """Normalises vector features (N, M, H) per atom and per spherical-harmonic degree.

    ``max_min`` rescales the per-channel norms of each degree block to [0, 1] (min → 0,
    max → 1) keeping directions; ``rms`` divides by the root-mean-square channel norm;
    ``none`` only applies the per-channel weight. Equivariant: only norms are used.

    Args:
        hidden_channels: H.
        trainable: make the per-channel weight (H,) trainable.
        norm_type: "none" (or None), "max_min" or "rms".
        norm_eps: smoothing radius of the vector norms (``visnet.model.norms``); 0 reproduces the
            reference code exactly (a non-smooth point wherever the vectors vanish).
    """

    def __init__(
        self,
        hidden_channels: int,
        trainable: bool = False,
        norm_type: str | None = "max_min",
        norm_eps: float = VECTOR_NORM_EPS,
    ) -> None:
        super().__init__()
        norm_type = "none" if norm_type is None else norm_type
        if norm_type not in VECNORM_TYPES:
            raise ValueError(f"vecnorm_type must be one of {VECNORM_TYPES} or None, got {norm_type!r}")
        self.norm_type = norm_type
        self.norm_eps = norm_eps
        weight = torch.ones(hidden_channels)
        if trainable:
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", weight)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.fill_(1.0)

    def _max_min(self, vec: Tensor) -> Tensor:
        # Smooth norms (exact above VECTOR_NORM_EPS): with exact ones the output at v -> 0 depends on
        # the direction of approach (a discontinuity at symmetric centres, not just a cusp).
        eps = self.norm_eps
        dist = smooth_floor((vec * vec).sum(dim=1, keepdim=True), eps)  # (N, 1, H)
        if eps <= 0:
            dist = dist.clamp(min=EXACT_FLOOR)
        direct = vec / dist
        max_val = dist.amax(dim=-1, keepdim=True)
        min_val = dist.amin(dim=-1, keepdim=True)
        delta = max_val - min_val
        if eps > 0:
            delta = smooth_floor(delta * delta, eps)  # = delta unless all channel norms agree within eps
        else:
            delta = torch.where(delta == 0, torch.ones_like(delta), delta)
        return torch.relu((dist - min_val) / delta) * direct

    def _rms(self, vec: Tensor) -> Tensor:
        mean_sq = (vec * vec).sum(dim=1).mean(dim=-1)  # (N,)
        if self.norm_eps <= 0:
            return vec / torch.sqrt(mean_sq).clamp(min=EXACT_FLOOR).view(-1, 1, 1)
        return vec / smooth_floor(mean_sq, self.norm_eps).view(-1, 1, 1)  # exact rms above eps, smooth at 0

    def _normalise_block(self, vec: Tensor) -> Tensor:
        if self.norm_type == "max_min":
            return self._max_min(vec)
        if self.norm_type == "rms":
            return self._rms(vec)
        return vec

    def forward(self, vec: Tensor) -> Tensor:
        """vec: (N, 3 or 8, H) -> (N, 3 or 8, H)."""
        if self.norm_type != "none":
            if vec.size(1) == 3:
                vec = self._normalise_block(vec)
            elif vec.size(1) == 8:
                l1, l2 = torch.split(vec, [3, 5], dim=1)
                vec = torch.cat([self._normalise_block(l1), self._normalise_block(l2)], dim=1)
            else:
                raise ValueError(f"VecLayerNorm supports 3 or 8 vector components, got {vec.size(1)}")
        return vec * self.weight
