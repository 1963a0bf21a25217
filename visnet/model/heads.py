"""Output heads (per-atom outputs, reduction hooks) and the per-element atom reference prior.

Each head follows TorchMD-Net's ``OutputModel`` protocol (``Head``): ``pre_reduce`` maps atom
features to per-atom contributions (N, 1) or (N, 3); the model reduces them per molecule;
``post_reduce`` finishes (e.g. the norm of a dipole vector). What the model does around the head
(reduce or not, apply the priors, differentiate into forces) is read from the head's declared
class attributes, never probed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from ase.data import atomic_masses
from torch import Tensor, nn

from visnet.model.norms import VECTOR_NORM_EPS, safe_norm, smooth_norm
from visnet.model.scatter import scatter_sum


class GatedEquivariantBlock(nn.Module):
    """Gated equivariant block (PaiNN / TorchMD-Net): mixes scalars with vector norms and gates vectors.

    Args:
        hidden_channels: input channels H.
        out_channels: output channels.
        intermediate_channels: width of the scalar MLP (default H).
        scalar_activation: SiLU on the scalar output.
        norm_eps: smoothing radius of the vector norm (``visnet.model.norms``; 0: exact, as PyG).
    """

    def __init__(
        self,
        hidden_channels: int,
        out_channels: int,
        intermediate_channels: int | None = None,
        scalar_activation: bool = False,
        norm_eps: float = VECTOR_NORM_EPS,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.norm_eps = norm_eps
        intermediate_channels = intermediate_channels or hidden_channels
        self.vec1_proj = nn.Linear(hidden_channels, hidden_channels, bias=False)
        self.vec2_proj = nn.Linear(hidden_channels, out_channels, bias=False)
        self.update_net = nn.Sequential(
            nn.Linear(2 * hidden_channels, intermediate_channels),
            nn.SiLU(),
            nn.Linear(intermediate_channels, 2 * out_channels),
        )
        self.act = nn.SiLU() if scalar_activation else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for linear in (self.vec1_proj, self.vec2_proj, self.update_net[0], self.update_net[2]):
            nn.init.xavier_uniform_(linear.weight)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)

    def forward(self, x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """x (N, H), v (N, M, H) -> x (N, out), v (N, M, out)."""
        vec1 = smooth_norm(
            self.vec1_proj(v), dim=-2, eps=self.norm_eps
        )  # exact |v| would put a cusp at symmetric centres
        vec2 = self.vec2_proj(v)
        x, gate = torch.split(self.update_net(torch.cat([x, vec1], dim=-1)), self.out_channels, dim=-1)
        return self.act(x), gate.unsqueeze(1) * vec2


class Head(nn.Module, ABC):
    """Protocol of an output head (TorchMD-Net's ``OutputModel``): what it is, declared once.

    Class attributes:
        reduce_per_molecule: the model sums/averages the per-atom outputs per molecule (False:
            the output stays per atom, e.g. the vector head's (N, 3)).
        takes_prior: the model applies std, the isolated-atom reference, the Atomref prior and
            the mean to the per-atom outputs (False: only std, e.g. a dipole has no atom reference).
        is_energy: an invariant, extensive scalar whose negative gradient is a force.
        vector_valued: ``pre_reduce`` gives (N, 3) vectors instead of (N, 1) scalars; reduced
            heads then also return the molecular vector as "<key>_vector" (G, 3).
    """

    reduce_per_molecule: ClassVar[bool] = True
    takes_prior: ClassVar[bool] = True
    is_energy: ClassVar[bool] = False
    vector_valued: ClassVar[bool] = False

    @abstractmethod
    def reset_parameters(self) -> None:
        """Re-initialise the head's weights."""

    @abstractmethod
    def pre_reduce(self, x: Tensor, v: Tensor, z: Tensor, pos: Tensor, batch: Tensor) -> Tensor:
        """x (N, H), v (N, M, H), z (N,), pos (N, 3) Å, batch (N,) -> (N, 1) or (N, 3) per-atom outputs."""

    def post_reduce(self, y: Tensor) -> Tensor:
        """(G, 1) or (G, 3) reduced outputs -> (G, 1) molecular property (identity by default)."""
        return y


class _GatedHead(Head):
    """Two gated equivariant blocks H -> H/2 -> out_channels."""

    def __init__(self, hidden_channels: int, out_channels: int = 1, norm_eps: float = VECTOR_NORM_EPS) -> None:
        super().__init__()
        self.output_network = nn.ModuleList(
            [
                GatedEquivariantBlock(hidden_channels, hidden_channels // 2, scalar_activation=True, norm_eps=norm_eps),
                GatedEquivariantBlock(hidden_channels // 2, out_channels, norm_eps=norm_eps),
            ]
        )

    def reset_parameters(self) -> None:
        for block in self.output_network:
            block.reset_parameters()

    def _run(self, x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        for block in self.output_network:
            x, v = block(x, v)
        return x, v


class EquivariantScalar(_GatedHead):
    """Invariant per-atom scalar (energy) through gated equivariant blocks -> (N, 1)."""

    is_energy = True

    def __init__(self, hidden_channels: int, norm_eps: float = VECTOR_NORM_EPS) -> None:
        super().__init__(hidden_channels, 1, norm_eps)

    def pre_reduce(self, x: Tensor, v: Tensor, z: Tensor, pos: Tensor, batch: Tensor) -> Tensor:
        out, _ = self._run(x, v)
        return out


class Scalar(Head):
    """Invariant per-atom scalar from the scalar features only (MLP H -> H/2 -> 1) -> (N, 1)."""

    is_energy = True

    def __init__(self, hidden_channels: int, norm_eps: float = VECTOR_NORM_EPS) -> None:
        super().__init__()
        self.output_network = nn.Sequential(
            nn.Linear(hidden_channels, hidden_channels // 2), nn.SiLU(), nn.Linear(hidden_channels // 2, 1)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for i in (0, 2):
            nn.init.xavier_uniform_(self.output_network[i].weight)
            nn.init.zeros_(self.output_network[i].bias)

    def pre_reduce(self, x: Tensor, v: Tensor, z: Tensor, pos: Tensor, batch: Tensor) -> Tensor:
        return self.output_network(x)


def _center_of_mass(masses: Tensor, pos: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Per-molecule centre of mass (num_graphs, 3) Å."""
    total = scatter_sum(masses, batch, num_graphs).clamp(min=1e-12)
    return scatter_sum(masses.unsqueeze(-1) * pos, batch, num_graphs) / total.unsqueeze(-1)


class _MassHead(_GatedHead):
    def __init__(self, hidden_channels: int, max_z: int, norm_eps: float = VECTOR_NORM_EPS) -> None:
        super().__init__(hidden_channels, 1, norm_eps)
        masses = torch.zeros(max_z)
        n = min(max_z, len(atomic_masses))
        masses[:n] = torch.as_tensor(atomic_masses[:n], dtype=torch.float32)
        self.register_buffer("atomic_mass", masses)

    def _relative_positions(self, z: Tensor, pos: Tensor, batch: Tensor) -> Tensor:
        num_graphs = int(batch.max()) + 1 if batch.numel() else 0
        center = _center_of_mass(self.atomic_mass[z].to(pos.dtype), pos, batch, num_graphs)
        return pos - center.index_select(0, batch)


class EquivariantDipoleMoment(_MassHead):
    """Dipole moment μ = Σ_i q_i (r_i − r_com) + μ_i (per-atom charges plus atomic dipoles).

    ``pre_reduce`` returns (N, 3); ``post_reduce`` returns |μ| (num_graphs, 1); the vector is
    kept by the model under ``<key>_vector``. Units: those of the training target
    (e.g. Debye for QM9's mu).
    """

    takes_prior = False
    vector_valued = True

    def pre_reduce(self, x: Tensor, v: Tensor, z: Tensor, pos: Tensor, batch: Tensor) -> Tensor:
        charge, atomic_dipole = self._run(x, v)
        return charge * self._relative_positions(z, pos, batch) + atomic_dipole[:, :3, 0]

    def post_reduce(self, y: Tensor) -> Tensor:
        return safe_norm(y, dim=-1, keepdim=True)


class ElectronicSpatialExtent(_MassHead):
    """Electronic spatial extent <R²> = Σ_i q_i |r_i − r_com|² -> per-atom (N, 1)."""

    def pre_reduce(self, x: Tensor, v: Tensor, z: Tensor, pos: Tensor, batch: Tensor) -> Tensor:
        weight, _ = self._run(x, v)
        rel = self._relative_positions(z, pos, batch)
        return weight * (rel * rel).sum(dim=-1, keepdim=True)


class EquivariantVectorOutput(_GatedHead):
    """Per-atom vector (N, 3) (e.g. direct force prediction); the model does not reduce it."""

    reduce_per_molecule = False
    takes_prior = False
    vector_valued = True

    def __init__(self, hidden_channels: int, norm_eps: float = VECTOR_NORM_EPS) -> None:
        super().__init__(hidden_channels, 1, norm_eps)

    def pre_reduce(self, x: Tensor, v: Tensor, z: Tensor, pos: Tensor, batch: Tensor) -> Tensor:
        _, vec = self._run(x, v)
        return vec[:, :3, 0]


HEADS = {
    "energy": EquivariantScalar,
    "scalar": Scalar,
    "dipole": EquivariantDipoleMoment,
    "spatial_extent": ElectronicSpatialExtent,
    "vector": EquivariantVectorOutput,
}


def build_head(name: str, hidden_channels: int, max_z: int, norm_eps: float = VECTOR_NORM_EPS) -> Head:
    """Head by name: one of ``HEADS``; ``norm_eps`` smooths the gated blocks' vector norms."""
    if name not in HEADS:
        raise ValueError(f"output_head must be one of {sorted(HEADS)}, got {name!r}")
    cls = HEADS[name]
    if issubclass(cls, _MassHead):
        return cls(hidden_channels, max_z, norm_eps)
    return cls(hidden_channels, norm_eps)
