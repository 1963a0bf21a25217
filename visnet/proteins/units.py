"""AI2BMD fragmentation: a protein as overlapping capped units whose energies add up to its own.

Units of one chain (residues r_1 .. r_n, ACE/NME caps allowed at the ends):

* a **dipeptide** unit for every amino acid c: the CA and C groups of the previous residue (its
  CA, HA, C, O: the acetyl "ACE" end), all atoms of c, and the N and CA groups of the next residue
  (its N, H, CA, HA: the N-methyl amide "NME" end) -- ACE-X-NME;
* an **ACE-NME** unit for every peptide bond between two amino acids c, c+1: the CA and C groups of
  c and the N and CA groups of c+1, i.e. exactly the overlap of the dipeptide units of c and c+1.

Every bond from a unit atom to an atom outside the unit is cut and capped with a hydrogen placed
on the cut bond at the element's fixed X-H length (``residues.X_H_BOND_LENGTH``). With signs +1
(dipeptide) and -1 (ACE-NME), every protein atom is counted exactly once (inclusion-exclusion:
a CA group lies in three dipeptide and two ACE-NME units, an N or C group in two and one, a side
chain in one), which ``Units.coverage`` verifies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from visnet.proteins.residues import CAPS, X_H_BOND_LENGTH
from visnet.proteins.topology import ProteinTopology, Residue

__all__ = ["Units", "DIPEPTIDE", "ACE_NME", "fragment"]

DIPEPTIDE, ACE_NME = 0, 1  # unit kinds


@dataclass(frozen=True)
class Units:
    """All units of a protein, flattened for one batched model call.

    Attributes (U units, M unit atoms in all, caps included):
        kind: (U,) DIPEPTIDE or ACE_NME.
        sign: (U,) +1 for dipeptides, -1 for ACE-NME units.
        residue: (U,) the dipeptide's residue, or the first residue of the ACE-NME's peptide bond.
        batch: (M,) unit of each unit atom (sorted).
        z: (M,) atomic numbers (1 for caps).
        source: (M,) protein atom of a real atom; for a cap, the atom it is bonded to (anchor).
        partner: (M,) for a cap, the protein atom its cut bond pointed to; -1 for real atoms.
        cap_length: (M,) Å, anchor-cap distance for caps; 0 for real atoms.
        num_atoms: atoms of the protein.
    """

    kind: np.ndarray
    sign: np.ndarray
    residue: np.ndarray
    batch: np.ndarray
    z: np.ndarray
    source: np.ndarray
    partner: np.ndarray
    cap_length: np.ndarray
    num_atoms: int

    @property
    def is_cap(self) -> np.ndarray:
        """(M,) bool: which unit atoms are cap hydrogens."""
        return self.partner >= 0

    def unit_atoms(self, u: int, caps: bool = False) -> np.ndarray:
        """Protein atoms of unit ``u`` (real atoms; with ``caps`` the caps' anchors too)."""
        rows = self.batch == u
        return self.source[rows if caps else rows & ~self.is_cap]

    def coverage(self) -> np.ndarray:
        """(N,) signed count of each protein atom over all units (1 everywhere when correct)."""
        real = ~self.is_cap
        return np.bincount(self.source[real], weights=self.sign[self.batch[real]], minlength=self.num_atoms)

    def shared_pairs(self) -> np.ndarray:
        """(P, 2) sorted unique pairs i < j of protein atoms that share a dipeptide unit (every pair
        an ACE-NME unit holds is also in a dipeptide): the pairs the model's units describe."""
        pairs = []
        real = ~self.is_cap
        batch, source = self.batch[real], self.source[real]
        # batch is sorted: one split gives every unit's real atoms (linear, not units x atoms)
        starts = np.flatnonzero(np.r_[True, batch[1:] != batch[:-1]]) if len(batch) else np.zeros(0, dtype=int)
        for start, atoms in zip(starts, np.split(source, starts[1:])):
            if self.kind[batch[start]] != DIPEPTIDE:
                continue
            atoms = np.sort(atoms)
            i, j = np.triu_indices(len(atoms), k=1)
            pairs.append(atoms[i] * self.num_atoms + atoms[j])
        keys = np.unique(np.concatenate(pairs)) if pairs else np.zeros(0, dtype=np.int64)
        return np.stack([keys // self.num_atoms, keys % self.num_atoms], axis=1)


def fragment(atoms: Atoms, topology: ProteinTopology | None = None) -> Units:
    """The AI2BMD units of a protein (topology read from ``atoms`` when not given).

    Raises:
        ValueError: as ``ProteinTopology.from_atoms`` (the residue and chain named).
    """
    topology = topology or ProteinTopology.from_atoms(atoms)
    neighbors = _adjacency(topology.bonds, len(atoms))
    members: list[tuple[int, int, np.ndarray]] = []  # (kind, residue, real atoms)
    for chain in topology.chains:
        members.extend(_chain_units(chain, topology.residues))
    units = _flatten(members, neighbors, atoms.numbers, len(atoms))
    counts = units.coverage()
    if not np.allclose(counts, 1.0):
        bad = int(np.flatnonzero(~np.isclose(counts, 1.0))[0])
        raise RuntimeError(f"fragmentation counts atom {bad} {counts[bad]:g} times (a bug)")
    return units


def _chain_units(chain: list[int], residues: list[Residue]) -> list[tuple[int, int, np.ndarray]]:
    out = []
    for k, r in enumerate(chain):
        residue = residues[r]
        if residue.name in CAPS:
            continue
        parts = [residue.atoms]
        if k > 0:
            parts.insert(0, residues[chain[k - 1]].group_atoms(1, 2))
        if k + 1 < len(chain):
            nxt = residues[chain[k + 1]]
            parts.append(nxt.group_atoms(0, 1))
            if nxt.name not in CAPS:
                overlap = np.concatenate([residue.group_atoms(1, 2), nxt.group_atoms(0, 1)])
                out.append((ACE_NME, r, overlap))
        out.append((DIPEPTIDE, r, np.concatenate(parts)))
    # dipeptides first, then ACE-NME units, each in sequence order
    return sorted(out, key=lambda m: m[0])


def _adjacency(bonds: np.ndarray, n: int) -> list[list[int]]:
    neighbors: list[list[int]] = [[] for _ in range(n)]
    for a, b in bonds.tolist():
        neighbors[a].append(b)
        neighbors[b].append(a)
    return neighbors


def _flatten(
    members: list[tuple[int, int, np.ndarray]], neighbors: list[list[int]], numbers: np.ndarray, n: int
) -> Units:
    members = sorted(members, key=lambda m: m[0])  # all dipeptides, then all ACE-NME units
    batch, source, partner, length = [], [], [], []
    for u, (_, _, real) in enumerate(members):
        inside = set(real.tolist())
        caps = [(a, b) for a in real.tolist() for b in neighbors[a] if b not in inside]
        source.extend(real.tolist() + [a for a, _ in caps])
        partner.extend([-1] * len(real) + [b for _, b in caps])
        length.extend([0.0] * len(real) + [X_H_BOND_LENGTH[int(numbers[a])] for a, _ in caps])
        batch.extend([u] * (len(real) + len(caps)))
    kind = np.asarray([m[0] for m in members], dtype=np.int64)
    source_arr, partner_arr = np.asarray(source, dtype=np.int64), np.asarray(partner, dtype=np.int64)
    z = np.where(partner_arr >= 0, 1, numbers[source_arr])
    return Units(
        kind=kind,
        sign=np.where(kind == DIPEPTIDE, 1.0, -1.0),
        residue=np.asarray([m[1] for m in members], dtype=np.int64),
        batch=np.asarray(batch, dtype=np.int64),
        z=z.astype(np.int64),
        source=source_arr,
        partner=partner_arr,
        cap_length=np.asarray(length, dtype=np.float64),
        num_atoms=n,
    )
