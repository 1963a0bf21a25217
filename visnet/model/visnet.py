"""The ViSNet model: representation → head → prior → reduce → autograd (forces, stress).

Example:
    ```python
    import torch
    from visnet import ViSNet

    model = ViSNet(hidden_channels=64, num_layers=3, lmax=2, cutoff=5.0)
    z = torch.tensor([8, 1, 1])                                                   # (N,) atomic numbers
    pos = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])  # (N, 3) Å
    out = model(z, pos)            # out["energy"] (1,), out["forces"] (3, 3) = -dE/dR
    ```
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from visnet.model import validation
from visnet.model.call import differentiate, open_call
from visnet.model.description import ViSNetDescription
from visnet.model.geometry import graph_geometry
from visnet.model.heads import build_head
from visnet.model.hyperparameters import check_atomref, check_hyperparameters, signature_arguments
from visnet.model.norms import VECTOR_NORM_EPS
from visnet.model.priors import Atomref, IsolatedAtomReference, isolated_atom_outputs
from visnet.model.readout import reduce_outputs
from visnet.model.representation import ViSNetRepresentation
from visnet.model.staged import StagedNeighborList
from visnet.neighbors import NeighborList

# Distances below this (Å) between distinct atoms are treated as coincident atoms (an input error).
MIN_DISTANCE = 1e-4


class ViSNet(ViSNetDescription, nn.Module):
    """ViSNet (Nat. Commun. 15, 313 (2024)): energies, forces, stress; names as PyG's ``ViSNet``.

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
        cutoff_type: envelope of all cutoff weights: "polynomial" (DimeNet/NequIP, p = 6; value and
            two derivatives zero at r_c: no kink in Hessians) or "cosine" (the paper's; its second
            derivative jumps at r_c). Default "polynomial"; ``from_pyg``, paper configs, older files: "cosine".

    Bad arguments raise ValueError naming the argument (bounds in ``visnet.model.hyperparameters``).
    ``hparams``: these arguments but mean, std, atomref (buffers ``mean``, ``std``, ``prior_model``).

    Example:
        ```python
        out = ViSNet(cutoff=5.0)(torch.tensor([8, 1, 1]), pos)  # pos (3, 3) Å -> out["energy"] (1,), out["forces"] (3, 3)
        ```
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
        cutoff_type: str = "polynomial",
    ) -> None:
        super().__init__()
        self._hparams = check_hyperparameters(signature_arguments(ViSNet.__init__, locals()))
        check_atomref(atomref, max_z)
        hp = self._hparams
        self.lmax = lmax
        self.max_z = max_z
        self.cutoff = hp["cutoff"]
        self.reduce_op = reduce_op
        self.derivative = derivative
        self.isolated_atom_reference = isolated_atom_reference
        self.metadata: dict[str, Any] = {}
        self.representation_model = ViSNetRepresentation(
            **{k: hp[k] for k in inspect.signature(ViSNetRepresentation).parameters}
        )
        self.output_model = build_head(output_head, hidden_channels, max_z, hp["vector_norm_eps"])
        self.prior_model = Atomref(None if atomref is None else torch.as_tensor(atomref), max_z)
        self.isolated_reference = IsolatedAtomReference()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def reset_parameters(self) -> None:
        self.representation_model.reset_parameters()
        self.output_model.reset_parameters()
        self.prior_model.reset_parameters()
        self.isolated_reference.refresh()

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
        inputs_checked: bool = False,
    ) -> dict[str, Tensor]:
        """Predict energies (or the head's property), forces (by autograd) and stress: the call of
        ``visnet.model.interface.AtomisticModel``, where the arguments are described.

        z (N,) int64, pos (N, 3) Å in the model's dtype, batch (N,) (None: one molecule), cell
        (3, 3) or (G, 3, 3) Å, pbc (3,) or (G, 3); ``neighbors``: a radius graph **with** self-loops
        (reused by the ASE calculator), built when None. ``inputs_checked`` skips the species and
        finiteness checks; coincident atoms, which only the model's geometry sees, are always checked.

        Returns:
            ``output_key`` (G,) in the training units, "atomic_<key>" (N,) (sum = output for "sum"
            reduction), "forces" (N, 3) = −dE/dpos, "stress" (G, 3, 3) = (1/V) dE/dε and "virial"
            (G, 3, 3) = −dE/dε; the dipole head adds "<key>_vector" (G, 3); the vector head returns
            "<key>" (N, 3).
        """
        call = open_call(self, z, pos, batch, cell, pbc, compute_forces, compute_stress, neighbors, inputs_checked)
        energy_fn = partial(self.energy, call.z, batch=call.batch, neighbors=call.neighbors, num_graphs=call.num_graphs)
        return differentiate(call, energy_fn, self.output_key, create_graph=self.training)

    def energy(
        self, z: Tensor, pos: Tensor, cell: Tensor | None, *, batch: Tensor, neighbors: NeighborList, num_graphs: int
    ) -> dict[str, Tensor]:
        """Outputs without derivatives, differentiable in pos (N, 3) Å and cell (G, 3, 3) Å (None: not
        periodic): the isolated-atom table looked up eagerly (``isolated_atom_table``), then
        ``graph_energy`` with the coincident-atom check. z, batch (N,); neighbors with self-loops."""
        isolated = None
        if self.uses_isolated_atom_reference:
            elements, inverse = torch.unique(z, return_inverse=True)
            isolated = (self.isolated_atom_table(elements), inverse)
        edge_index, offsets = neighbors.edge_index, neighbors.cell_offsets
        stages = neighbors.stage_edges if isinstance(neighbors, StagedNeighborList) else None
        return self.graph_energy(z, pos, cell, batch, edge_index, offsets, num_graphs, isolated, True, stages)

    def graph_energy(
        self,
        z: Tensor,
        pos: Tensor,
        cell: Tensor | None,
        batch: Tensor,
        edge_index: Tensor,
        cell_offsets: Tensor,
        num_graphs: int,
        isolated: tuple[Tensor, Tensor] | None = None,
        check: bool = False,
        stage_edges: tuple[int, ...] | None = None,
    ) -> dict[str, Tensor]:
        """The energy function as a function of tensors: geometry → representation → head →
        prior → reduce, with no cache and no data-dependent shape (``torch.compile`` and
        ``torch.export`` trace it in one graph when ``check`` is False; ``stage_edges``: ``visnet.model.staged``).

        Args:
            z: (N,) atomic numbers. pos: (N, 3) Å. cell: (G, 3, 3) Å, or None (no periodic shifts).
            batch: (N,) graph index. edge_index: (2, E) with one self-loop per atom.
            cell_offsets: (E, 3) integer image offsets. num_graphs: G.
            isolated: (table (K, 1), index (N,)): the isolated-atom outputs of the model (``isolated_atom_table``)
                and each atom's row in it; None when ``uses_isolated_atom_reference`` is False.
            check: raise ValueError for coincident atoms (a data-dependent check, eager only).

        Returns:
            As ``energy``: ``output_key`` (G,) and "atomic_<key>" (N,) (or the head's keys).
        """
        geometry = graph_geometry(pos, cell, batch, edge_index, cell_offsets, self.lmax)
        if check:
            validation.check_no_coincident_atoms(geometry.distances, edge_index, geometry.self_loop, MIN_DISTANCE)
        head = self.output_model
        x, v = self.representation_model(z, geometry, stage_edges)
        per_atom = head.pre_reduce(x, v, z, pos, batch)
        if not head.reduce_per_molecule:
            return {self.output_key: per_atom * self.std}
        if self.uses_isolated_atom_reference:
            if isolated is None:
                raise ValueError("this model subtracts isolated-atom outputs: pass isolated=(table, index)")
            per_atom = self.isolated_reference(per_atom, *isolated)
        per_atom = per_atom * self.std
        if head.takes_prior:
            per_atom = self.prior_model(per_atom, z)
        return reduce_outputs(head, per_atom, batch, num_graphs, self.output_key, self.reduce_op, self.mean)

    def isolated_atom_table(self, elements: Tensor | None = None) -> Tensor:
        """(K, 1) head outputs of ``elements`` (K,) as atoms with no neighbours (default: every atomic
        number 0..max_z−1, so ``table[z]`` indexes it), computed eagerly; cached in eval mode while the
        parameters keep their versions (``IsolatedAtomReference``), in training differentiable in the weights."""
        if elements is None:
            elements = torch.arange(self.max_z, device=self.device)
        lone = partial(isolated_atom_outputs, self.representation_model, self.output_model, self.lmax, self.dtype)
        return self.isolated_reference.table(elements, lone, self.parameters(), self.dtype, cache=not self.training)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
