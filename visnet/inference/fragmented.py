"""A protein's energy and forces from ViSNet on its AI2BMD units (``visnet.proteins.units``).

    E = sum_dipeptide E_ML(unit) - sum_ACE-NME E_ML(unit) + E_MM(pairs sharing no unit)

All units of a call go through the model in one batch. A cap hydrogen sits at
``x_cap = x_a + L (x_b - x_a) / |x_b - x_a|`` on the cut bond a-b, so its force reaches a and b
by the chain rule (a vector-Jacobian product through that map): the forces are exactly -dE/dR of
the assembled energy. ``E_MM`` is Amber14's Coulomb + Lennard-Jones between atoms that share no
dipeptide unit (AI2BMD's choice); pairs inside a unit are the model's. With a cutoff (default
``DEFAULT_NONBONDED_CUTOFF``) ``E_MM`` is the shifted-force form of ``visnet.proteins.nonbonded``
over the pairs of a neighbour list (``visnet.neighbors``), linear in the atoms; without, the exact
all-pairs sum of AI2BMD (O(N^2)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ase import Atoms
from torch import Tensor, nn

from visnet.inference.resolve import ModelInfo
from visnet.neighbors import radius_graph
from visnet.proteins.forcefield import MM_ARRAYS, has_amber_parameters
from visnet.proteins.nonbonded import nonbonded, nonbonded_cutoff
from visnet.proteins.topology import ProteinTopology
from visnet.proteins.units import Units, fragment

__all__ = [
    "DEFAULT_NONBONDED_CUTOFF",
    "FRAGMENTATIONS",
    "NONBONDED",
    "FragmentedProtein",
    "check_nonbonded_cutoff",
    "topology_key",
]

FRAGMENTATIONS = ("ai2bmd",)
NONBONDED = ("amber14", None)
DEFAULT_NONBONDED_CUTOFF = 12.0  # Å


def check_nonbonded_cutoff(cutoff: float | None) -> float | None:
    """``cutoff`` as a float (Å), or None (no cutoff); ValueError for anything else."""
    if cutoff is None:
        return None
    try:
        value = float(cutoff)
    except (TypeError, ValueError):
        value = float("nan")
    if not (value > 0.0 and value < float("inf")):
        raise ValueError(f"nonbonded_cutoff must be a positive number of Å or None (no cutoff), got {cutoff!r}")
    return value


def topology_key(atoms: Atoms) -> tuple:
    """Changes whenever the units of ``atoms`` could change (numbers, residues, atom names)."""
    arrays = [atoms.arrays.get(k) for k in ("residuenames", "residuenumbers", "atomtypes", "chainids")]
    return (atoms.numbers.tobytes(), *(None if a is None else a.tobytes() for a in arrays))


@dataclass
class FragmentedProtein:
    """The units of one protein topology, ready for repeated evaluation.

    Args (of ``build``): atoms: the protein (residue arrays, all hydrogens); elements: atomic
    numbers the model knows; nonbonded: "amber14" (needs the ``mm_*`` arrays of
    ``visnet.proteins.forcefield``) or None (units only: atoms sharing no unit do not interact);
    cutoff: Å of the shifted-force MM term, or None for the exact all-pairs sum.
    """

    topology: ProteinTopology
    units: Units
    excluded: Tensor | None  # (P, 2) pairs sharing a unit, when the MM term is on
    mm: tuple[Tensor, Tensor, Tensor] | None  # charges e, sigmas Å, epsilons eV (float64)
    cutoff: float | None = None  # Å of the MM term; None: all pairs

    @classmethod
    def build(
        cls,
        atoms: Atoms,
        elements: frozenset[int],
        nonbonded: str | None,
        cutoff: float | None = DEFAULT_NONBONDED_CUTOFF,
    ) -> FragmentedProtein:
        cutoff = check_nonbonded_cutoff(cutoff)
        if nonbonded not in NONBONDED:
            raise ValueError(f"nonbonded must be one of {NONBONDED}, got {nonbonded!r}")
        topology = ProteinTopology.from_atoms(atoms)
        _check_elements(atoms, topology, elements)
        units = fragment(atoms, topology)
        if nonbonded is None:
            return cls(topology, units, None, None)
        if not has_amber_parameters(atoms):
            raise ValueError(
                "nonbonded='amber14' needs Amber parameters on the atoms (arrays "
                f"{', '.join(MM_ARRAYS)}): read the protein with visnet.proteins.read_protein, or pass nonbonded=None"
            )
        mm = tuple(torch.as_tensor(atoms.arrays[k], dtype=torch.float64) for k in MM_ARRAYS)
        return cls(topology, units, torch.as_tensor(units.shared_pairs()), mm, cutoff)

    def mm_pairs(self, pos: Tensor) -> Tensor:
        """(P, 2) int64 pairs i < j closer than the cutoff that share no unit, at ``pos`` (N, 3) Å."""
        if self.cutoff is None or self.excluded is None:
            raise ValueError("mm_pairs needs the MM term with a cutoff")
        edges = radius_graph(pos, self.cutoff).edge_index
        j, i = edges[0], edges[1]
        keep = i < j
        i, j = i[keep], j[keep]
        n = len(pos)
        excluded = self.excluded[:, 0] * n + self.excluded[:, 1]
        keep = ~torch.isin(i * n + j, excluded)
        return torch.stack([i[keep], j[keep]], dim=1)

    def nonbonded_terms(self, pos: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The MM term at ``pos`` (N, 3) Å (float64): energy () eV, forces (N, 3) eV/Å, per-atom
        energies (N,) eV; zeros without the MM term."""
        if self.mm is None or self.excluded is None:
            return pos.new_zeros(()), torch.zeros_like(pos), pos.new_zeros(len(pos))
        if self.cutoff is None:
            return nonbonded(pos, *self.mm, self.excluded)
        return nonbonded_cutoff(pos, *self.mm, self.mm_pairs(pos), self.cutoff)

    def unit_positions(self, pos: Tensor) -> Tensor:
        """(M, 3) Å positions of all unit atoms (caps on their cut bonds) from protein ``pos`` (N, 3) Å;
        differentiable in ``pos``."""
        u = self.units
        source = torch.as_tensor(u.source, device=pos.device)
        out = pos.index_select(0, source)
        rows = torch.as_tensor(np.flatnonzero(u.is_cap), device=pos.device)
        anchor = out.index_select(0, rows)
        bond = pos.index_select(0, torch.as_tensor(u.partner[u.is_cap], device=pos.device)) - anchor
        length = torch.as_tensor(u.cap_length[u.is_cap], dtype=pos.dtype, device=pos.device)
        step = length.unsqueeze(-1) * bond / bond.norm(dim=-1, keepdim=True)
        return out.index_add(0, rows, step)

    def evaluate(
        self, model: nn.Module, info: ModelInfo, positions: np.ndarray, device: Any, dtype: torch.dtype
    ) -> dict[str, Any]:
        """Energy (eV), forces (N, 3) eV/Å, per-atom and per-residue energies (eV) of the protein.

        Per-atom energies: each unit atom's energy times the unit's sign, a cap's given to its
        anchor, plus half of each MM pair energy; they sum to the energy. ``unit_energies`` (U,) eV
        are the units' own energies (before the sign)."""
        u = self.units
        pos = torch.tensor(positions, dtype=torch.float64, requires_grad=True)
        with torch.enable_grad():
            unit_pos = self.unit_positions(pos)
        conv, key = info.units, info.output_key
        out = model(
            torch.as_tensor(u.z, device=device),
            (unit_pos.detach() / conv.length).to(device=device, dtype=dtype),
            torch.as_tensor(u.batch, device=device),
            compute_forces=True,
        )
        sign = torch.as_tensor(u.sign, dtype=torch.float64)
        batch = torch.as_tensor(u.batch)
        unit_forces = out["forces"].detach().to("cpu", torch.float64) * conv.force * sign[batch].unsqueeze(-1)
        (forces,) = torch.autograd.grad(unit_pos, pos, grad_outputs=unit_forces)
        unit_energies = out[key].detach().to("cpu", torch.float64) * conv.energy
        atomic = out[f"atomic_{key}"].detach().to("cpu", torch.float64) * conv.energy * sign[batch]
        energies = torch.zeros(u.num_atoms, dtype=torch.float64).index_add_(0, torch.as_tensor(u.source), atomic)
        energy = (sign * unit_energies).sum()
        if self.mm is not None:
            e_mm, f_mm, per_atom_mm = self.nonbonded_terms(pos.detach())
            energy, forces, energies = energy + e_mm, forces + f_mm, energies + per_atom_mm
        residue = torch.as_tensor(self.topology.residue_index)
        residue_energies = torch.zeros(len(self.topology.residues), dtype=torch.float64).index_add_(
            0, residue, energies
        )
        return {
            "energy": float(energy),
            "forces": forces.numpy(),
            "energies": energies.numpy(),
            "residue_energies": residue_energies.numpy(),
            "unit_energies": unit_energies.numpy(),
        }


def _check_elements(atoms: Atoms, topology: ProteinTopology, elements: frozenset[int]) -> None:
    from ase.data import chemical_symbols

    outside = np.flatnonzero(~np.isin(atoms.numbers, sorted(elements)))
    if len(outside):
        i = int(outside[0])
        residue = topology.residues[int(topology.residue_index[i])]
        known = ", ".join(chemical_symbols[z] for z in sorted(elements))
        raise ValueError(
            f"{residue.label}: element {chemical_symbols[atoms.numbers[i]]} (atom {atoms.arrays['atomtypes'][i]}) "
            f"is not among the model's elements ({known})"
        )
