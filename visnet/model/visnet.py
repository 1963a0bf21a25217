"""The ViSNet model: representation → head → prior → reduce → autograd (forces, stress)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from visnet.model import validation
from visnet.model.geometry import EdgeGeometry, edge_geometry
from visnet.model.heads import Atomref, build_head
from visnet.model.norms import VECTOR_NORM_EPS
from visnet.model.representation import ViSNetRepresentation
from visnet.model.scatter import scatter_mean, scatter_sum
from visnet.neighbors import NeighborList, radius_graph

# Distances below this (Å) between distinct atoms are treated as coincident atoms (an input error).
MIN_DISTANCE = 1e-4


class ViSNet(nn.Module):
    """ViSNet (Wang et al., Nat. Commun. 15, 313 (2024)) with energies, forces and stress.

    Hyperparameter names follow ``torch_geometric.nn.models.ViSNet``.

    Args:
        lmax: degree of the spherical-harmonic direction units, 1 or 2. Default 1.
        vecnorm_type: VecLayerNorm type: None/"none", "max_min" or "rms". Default None.
        trainable_vecnorm: trainable VecLayerNorm weights. Default False.
        num_heads: attention heads. Default 8.
        num_layers: ViS-MP layers. Default 6.
        hidden_channels: feature width H. Default 128.
        num_rbf: radial basis size. Default 32.
        trainable_rbf: trainable radial basis. Default False.
        max_z: element tables cover atomic numbers 1..max_z−1. Default 100.
        cutoff: neighbour cutoff in Å. Default 5.0.
        vertex: PyG's vertex (ViS_MP_Vertex) edge update. Default False.
        atomref: (max_z,) initial per-element reference values in output units, or None (zeros).
        reduce_op: "sum" or "mean" over the atoms of a molecule. Default "sum".
        mean: added to each molecule's output after reduction (PyG semantics). Default 0.
        std: multiplies each atom's network output. Default 1.
        derivative: compute forces = −dE/dpos by default. Default True.
        vector_cutoff: cutoff on vector messages, so energy is continuous at r_c. Default True
            (the reference code has False; ``from_pyg`` sets False).
        rbf_type: "expnorm" or "gauss". Default "expnorm".
        output_head: "energy", "scalar", "dipole", "spatial_extent" or "vector". Default "energy".
        output_key: name of the main output in the returned dict. Default "energy".
        isolated_atom_reference: subtract the network's output for each element's isolated atom,
            so an atom with no neighbours gets exactly its atom reference (the atomrefs are then
            free-atom energies and separated fragments add up). Default True (False in from_pyg).
        vector_norm_eps: smoothing radius of the norms of learned vectors (output head,
            VecLayerNorm): exact above it, C2-smooth at zero, so energies have no cusp and forces
            stay −dE/dR where symmetry makes vector features vanish. Default 3e-2; 0 is the
            reference code's exact norm (``from_pyg`` sets 0 for bit-level parity).
    """

    def __init__(
        self,
        lmax: int = 1,
        vecnorm_type: str | None = None,
        trainable_vecnorm: bool = False,
        num_heads: int = 8,
        num_layers: int = 6,
        hidden_channels: int = 128,
        num_rbf: int = 32,
        trainable_rbf: bool = False,
        max_z: int = 100,
        cutoff: float = 5.0,
        vertex: bool = False,
        atomref: Tensor | list[float] | None = None,
        reduce_op: str = "sum",
        mean: float = 0.0,
        std: float = 1.0,
        derivative: bool = True,
        vector_cutoff: bool = True,
        rbf_type: str = "expnorm",
        output_head: str = "energy",
        output_key: str = "energy",
        isolated_atom_reference: bool = True,
        vector_norm_eps: float = VECTOR_NORM_EPS,
    ) -> None:
        super().__init__()
        if reduce_op not in ("sum", "mean"):
            raise ValueError(f"reduce_op must be 'sum' or 'mean', got {reduce_op!r}")
        if cutoff <= 0:
            raise ValueError(f"cutoff must be positive, got {cutoff}")
        if not vector_norm_eps >= 0:
            raise ValueError(f"vector_norm_eps must be >= 0, got {vector_norm_eps}")
        self.hparams: dict[str, Any] = dict(
            lmax=lmax,
            vecnorm_type=vecnorm_type,
            trainable_vecnorm=trainable_vecnorm,
            num_heads=num_heads,
            num_layers=num_layers,
            hidden_channels=hidden_channels,
            num_rbf=num_rbf,
            trainable_rbf=trainable_rbf,
            max_z=max_z,
            cutoff=float(cutoff),
            vertex=vertex,
            reduce_op=reduce_op,
            mean=float(mean),
            std=float(std),
            derivative=derivative,
            vector_cutoff=vector_cutoff,
            rbf_type=rbf_type,
            output_head=output_head,
            output_key=output_key,
            isolated_atom_reference=isolated_atom_reference,
            vector_norm_eps=float(vector_norm_eps),
        )
        self.lmax = lmax
        self.max_z = max_z
        self.cutoff = float(cutoff)
        self.reduce_op = reduce_op
        self.derivative = derivative
        self.output_key = output_key
        self.isolated_atom_reference = isolated_atom_reference
        self.check_inputs = True
        self.representation_model = ViSNetRepresentation(
            hidden_channels=hidden_channels,
            num_layers=num_layers,
            num_rbf=num_rbf,
            rbf_type=rbf_type,
            trainable_rbf=trainable_rbf,
            cutoff=cutoff,
            lmax=lmax,
            num_heads=num_heads,
            vecnorm_type=vecnorm_type,
            trainable_vecnorm=trainable_vecnorm,
            max_z=max_z,
            vertex=vertex,
            vector_cutoff=vector_cutoff,
            vector_norm_eps=vector_norm_eps,
        )
        self.output_model = build_head(output_head, hidden_channels, max_z, vector_norm_eps)
        self.prior_model = Atomref(None if atomref is None else torch.as_tensor(atomref), max_z)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))
        self._isolated_cache: tuple[Any, Tensor] | None = None

    def reset_parameters(self) -> None:
        self.representation_model.reset_parameters()
        self.output_model.reset_parameters()
        self.prior_model.reset_parameters()

    @property
    def predicts_energy(self) -> bool:
        """True when the output is a potential energy: an energy head whose output key is "energy".

        Only such models may drive a calculator or MD; property models (QM9's gap, mu, and U0,
        which was trained on relaxed geometries without forces) may not.
        """
        return self.output_model.is_energy and self.output_key == "energy"

    @property
    def per_atom_output(self) -> bool:
        """True when the main output is per atom ((N, 3) for the vector head), not per molecule."""
        return not self.output_model.reduce_per_molecule

    @property
    def dtype(self) -> torch.dtype:
        return self.std.dtype

    @property
    def device(self) -> torch.device:
        return self.std.device

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        z: Tensor,
        pos: Tensor,
        batch: Tensor | None = None,
        cell: Tensor | None = None,
        pbc: Tensor | None = None,
        *,
        compute_forces: bool | None = None,
        compute_stress: bool = False,
        neighbors: NeighborList | None = None,
    ) -> dict[str, Tensor]:
        """Predict energies (or the head's property), forces and stress.

        Args:
            z: (N,) int64 atomic numbers.
            pos: (N, 3) Å positions, the model's dtype.
            batch: (N,) int64 sorted molecule index (None: one molecule).
            cell: (3, 3) or (G, 3, 3) Å lattice vectors as rows, or None.
            pbc: (3,) or (G, 3) bool periodic directions (None with a cell: all periodic).
            compute_forces: override the model's ``derivative`` setting.
            compute_stress: also return the stress (needs a periodic cell).
            neighbors: a precomputed radius graph of this structure **with** self-loops
                (e.g. reused by the ASE calculator); built here when None.

        Returns:
            dict with ``output_key`` (G,) (e.g. "energy" in the training units), "atomic_<key>"
            (N,) per-atom contributions (sum = output for "sum" reduction), "forces" (N, 3)
            = −dE/dpos, "stress" (G, 3, 3) = (1/V) dE/dε and "virial" (G, 3, 3) = −dE/dε;
            the dipole head adds "<key>_vector" (G, 3); the vector head returns "<key>" (N, 3).
        """
        z, pos, batch, cell, pbc, num_graphs = self._prepare(z, pos, batch, cell, pbc)
        compute_forces = self.derivative if compute_forces is None else compute_forces
        periodic = cell is not None and bool(pbc.any())
        if compute_stress and not periodic:
            raise ValueError("stress requested but the structure has no periodic cell")
        if (compute_forces or compute_stress) and torch.is_inference_mode_enabled():
            raise RuntimeError("forces need autograd: call the model outside torch.inference_mode()")
        if neighbors is None:
            neighbors = radius_graph(pos.detach(), self.cutoff, batch, cell, pbc, self_loops=True)
        with torch.set_grad_enabled(torch.is_grad_enabled() or compute_forces or compute_stress):
            return self._forward(z, pos, batch, cell, num_graphs, neighbors, periodic, compute_forces, compute_stress)

    def _prepare(self, z, pos, batch, cell, pbc):
        z = torch.as_tensor(z, device=self.device)
        if self.check_inputs:
            validation.check_species(z, self.max_z)
            validation.check_positions(pos, z.size(0), self.dtype)
        if batch is None:
            batch = torch.zeros(z.size(0), dtype=torch.long, device=pos.device)
            num_graphs = 1
        else:
            num_graphs = validation.check_batch(batch, z.size(0))
        cell, pbc = validation.check_cell(cell, pbc, num_graphs, self.dtype)
        return z.long(), pos, batch.long(), cell, pbc, num_graphs

    def _forward(
        self,
        z: Tensor,
        pos: Tensor,
        batch: Tensor,
        cell: Tensor | None,
        num_graphs: int,
        neighbors: NeighborList,
        periodic: bool,
        compute_forces: bool,
        compute_stress: bool,
    ) -> dict[str, Tensor]:
        if compute_forces and not pos.requires_grad:
            pos = pos.detach().requires_grad_(True)
        pos_in = pos
        displacement = None
        if compute_stress:
            # Homogeneous strain ε applied to positions and cell: stress = (1/V) dE/dε.
            displacement = torch.zeros(num_graphs, 3, 3, dtype=pos.dtype, device=pos.device, requires_grad=True)
            strain = 0.5 * (displacement + displacement.transpose(1, 2))
            pos = pos + torch.einsum("ni,nij->nj", pos, strain.index_select(0, batch))
            cell = cell + torch.bmm(cell, strain)

        geometry = self._geometry(pos, batch, cell, neighbors, periodic)
        out = self._predict(z, pos, batch, geometry, num_graphs)

        if compute_forces or compute_stress:
            energy = out[self.output_key]
            inputs = [pos_in] + ([displacement] if compute_stress else [])
            grads = torch.autograd.grad(
                energy.sum(), inputs, create_graph=self.training, retain_graph=self.training, allow_unused=True
            )
            if compute_forces:
                out["forces"] = -grads[0] if grads[0] is not None else torch.zeros_like(pos_in)
            if compute_stress:
                volume = torch.linalg.det(cell).abs().view(-1, 1, 1)
                out["virial"] = -grads[-1]
                out["stress"] = grads[-1] / volume
        return out

    def _geometry(
        self, pos: Tensor, batch: Tensor, cell: Tensor | None, neighbors: NeighborList, periodic: bool
    ) -> EdgeGeometry:
        edge_index = neighbors.edge_index
        offsets = neighbors.cell_offsets
        shifts = None
        if periodic:
            edge_cell = cell.index_select(0, batch.index_select(0, edge_index[1]))
            shifts = torch.einsum("ei,eij->ej", offsets.to(pos.dtype), edge_cell)
        self_loop = (edge_index[0] == edge_index[1]) & (offsets == 0).all(dim=-1)
        geometry = edge_geometry(pos, edge_index, shifts, self.lmax, self_loop)
        if self.check_inputs:
            validation.check_no_coincident_atoms(geometry.distances, edge_index, self_loop, MIN_DISTANCE)
        return geometry

    def _predict(
        self, z: Tensor, pos: Tensor, batch: Tensor, geometry: EdgeGeometry, num_graphs: int
    ) -> dict[str, Tensor]:
        head = self.output_model
        x, v = self.representation_model(z, geometry)
        per_atom = head.pre_reduce(x, v, z, pos, batch)
        key = self.output_key
        if not head.reduce_per_molecule:
            return {key: per_atom * self.std}
        if self.isolated_atom_reference and head.takes_prior:
            per_atom = per_atom - self._isolated_atom_outputs(z)
        per_atom = per_atom * self.std
        if head.takes_prior:
            per_atom = self.prior_model(per_atom, z)
        reduce = scatter_sum if self.reduce_op == "sum" else scatter_mean
        y = reduce(per_atom, batch, num_graphs)
        if head.takes_prior:
            y = y + self.mean
        out = {key: head.post_reduce(y).squeeze(-1)}
        if head.vector_valued:
            out[f"{key}_vector"] = y
        else:
            out[f"atomic_{key}"] = self._atomic_contributions(per_atom, batch, num_graphs)
        return out

    def _atomic_contributions(self, per_atom: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """(N,) per-atom shares of the molecular output (the per-molecule mean spread evenly)."""
        counts = scatter_sum(torch.ones_like(per_atom), batch, num_graphs)
        if self.reduce_op == "mean":
            per_atom = per_atom / counts.index_select(0, batch)
        return (per_atom + (self.mean / counts).index_select(0, batch)).squeeze(-1)

    # ------------------------------------------------------ isolated-atom outputs
    def _isolated_atom_outputs(self, z: Tensor) -> Tensor:
        """(N, 1) head output each atom would have with no neighbours (cached in eval mode)."""
        elements, inverse = torch.unique(z, return_inverse=True)
        key = None
        if not self.training:  # parameters are fixed: reuse the table while their versions match
            key = (tuple(elements.tolist()), tuple(p._version for p in self.parameters()), self.dtype, self.device)
            if self._isolated_cache is not None and self._isolated_cache[0] == key:
                return self._isolated_cache[1].index_select(0, inverse)
        table = self._isolated_outputs_of(elements)
        if key is not None:
            self._isolated_cache = (key, table.detach())
        return table.index_select(0, inverse)

    def _isolated_outputs_of(self, elements: Tensor) -> Tensor:
        n = elements.size(0)
        loops = torch.arange(n, device=elements.device)
        geometry = EdgeGeometry(
            edge_index=torch.stack([loops, loops]),
            distances=torch.zeros(n, dtype=self.dtype, device=self.device),
            directions=torch.zeros(n, (self.lmax + 1) ** 2 - 1, dtype=self.dtype, device=self.device),
            self_loop=torch.ones(n, dtype=torch.bool, device=self.device),
        )
        x, v = self.representation_model(elements, geometry)
        pos = torch.zeros(n, 3, dtype=self.dtype, device=self.device)
        return self.output_model.pre_reduce(x, v, elements, pos, loops)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
