"""Layer normalisation of the equivariant vector features (VecLayerNorm)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visnet.model.geometry import safe_norm

VECNORM_TYPES = ("none", "max_min", "rms")


class VecLayerNorm(nn.Module):
    """Normalises vector features (N, M, H) per atom and per spherical-harmonic degree.

    ``max_min`` rescales the per-channel norms of each degree block to [0, 1] (min → 0,
    max → 1) keeping directions; ``rms`` divides by the root-mean-square channel norm;
    ``none`` only applies the per-channel weight. Equivariant: only norms are used.

    Args:
        hidden_channels: H.
        trainable: make the per-channel weight (H,) trainable.
        norm_type: "none" (or None), "max_min" or "rms".
    """

    eps = 1e-12

    def __init__(self, hidden_channels: int, trainable: bool = False, norm_type: str | None = "max_min") -> None:
        super().__init__()
        norm_type = "none" if norm_type is None else norm_type
        if norm_type not in VECNORM_TYPES:
            raise ValueError(f"vecnorm_type must be one of {VECNORM_TYPES} or None, got {norm_type!r}")
        self.norm_type = norm_type
        weight = torch.ones(hidden_channels)
        if trainable:
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", weight)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.fill_(1.0)

    def _max_min(self, vec: Tensor) -> Tensor:
        dist = safe_norm(vec, dim=1, keepdim=True).clamp(min=self.eps)  # (N, 1, H)
        direct = vec / dist
        max_val = dist.amax(dim=-1, keepdim=True)
        min_val = dist.amin(dim=-1, keepdim=True)
        delta = max_val - min_val
        delta = torch.where(delta == 0, torch.ones_like(delta), delta)
        return torch.relu((dist - min_val) / delta) * direct

    def _rms(self, vec: Tensor) -> Tensor:
        dist = safe_norm(vec, dim=1).clamp(min=self.eps)  # (N, H)
        rms = torch.sqrt(torch.mean(dist * dist, dim=-1))
        return vec / rms.view(-1, 1, 1)

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
