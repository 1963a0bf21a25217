"""The residue topology of a protein held in ``ase.Atoms``: residues, chains, backbone groups,
bonds, with the checks fragmentation needs (one-line errors naming residue and chain).

A protein's atoms carry per-atom arrays (set by ``read_protein``, ``peptide_from_sequence`` or
ASE's PDB reader): ``residuenames`` (str), ``residuenumbers`` (int), ``atomtypes`` (PDB atom
name, str) and optionally ``chainids`` (str; one chain "A" when absent).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import covalent_radii

from visnet.proteins.residues import AMINO_ACIDS, CAPS, heavy_group

__all__ = ["ProteinTopology", "Residue", "has_residue_arrays", "RESIDUE_ARRAYS"]

RESIDUE_ARRAYS = ("residuenames", "residuenumbers", "atomtypes")
# Two heavy atoms are bonded when closer than this factor times the sum of covalent radii.
BOND_FACTOR = 1.2
MAX_X_H = 1.35  # Å, longest X-H bond accepted when attaching a hydrogen to its heavy atom (C, N, O)
MAX_PEPTIDE_BOND = 2.0  # Å, a longer C(i)-N(i+1) distance is a chain break
MAX_DISULFIDE = 2.5  # Å, SG-SG distance of a disulfide bond


@dataclass(frozen=True)
class Residue:
    """One residue: ``chain`` id, ``name`` (e.g. "TYR"), ``number`` (as in the file), ``atoms``
    (k,) indices into the protein, ``groups`` (k,) group codes (0 N, 1 CA, 2 C, 3 side chain)."""

    chain: str
    name: str
    number: int
    atoms: np.ndarray
    groups: np.ndarray

    @property
    def label(self) -> str:
        """ "chain A TYR 2": how errors name the residue."""
        return f"chain {self.chain} {self.name} {self.number}"

    def group_atoms(self, *codes: int) -> np.ndarray:
        """Indices (into the protein) of this residue's atoms in the given groups."""
        return self.atoms[np.isin(self.groups, codes)]

    def atom(self, name: str, atomtypes: np.ndarray) -> int | None:
        """Index of the atom called ``name`` in this residue, or None."""
        hits = self.atoms[atomtypes[self.atoms] == name]
        return int(hits[0]) if len(hits) else None


def has_residue_arrays(atoms: Atoms) -> bool:
    """Whether ``atoms`` carries residue names, numbers and atom names."""
    return all(name in atoms.arrays for name in RESIDUE_ARRAYS)


@dataclass(frozen=True)
class ProteinTopology:
    """Residues (in file order), chains (lists of residue indices, N to C terminus) and bonds.

    Attributes:
        residues: every residue.
        chains: residue indices of each chain in sequence order.
        residue_index: (N,) residue of each atom.
        bonds: (K, 2) intra-residue bonds (heavy-heavy by distance, hydrogen to its heavy atom).
    """

    residues: list[Residue]
    chains: list[list[int]]
    residue_index: np.ndarray
    bonds: np.ndarray

    @classmethod
    def from_atoms(cls, atoms: Atoms) -> ProteinTopology:
        """Read and check the topology of ``atoms`` (positions in Å decide bonds).

        Raises:
            ValueError: missing residue arrays; a residue that is not a standard amino acid or
                ACE/NME cap (ligand, water, ion, modified residue); a residue without hydrogens;
                missing backbone atoms; a chain break; a disulfide bond; misplaced caps. The
                message names the residue and chain.
        """
        if not has_residue_arrays(atoms):
            raise ValueError(
                "fragmentation needs residue names, numbers and atom names (atoms.arrays "
                f"{', '.join(RESIDUE_ARRAYS)}): read the protein with visnet.proteins.read_protein"
            )
        names = np.char.strip(atoms.arrays["residuenames"].astype(str))
        atomtypes = np.char.strip(atoms.arrays["atomtypes"].astype(str))
        numbers = atoms.arrays["residuenumbers"].astype(int)
        chainids = atoms.arrays["chainids"].astype(str) if "chainids" in atoms.arrays else np.full(len(atoms), "A")
        residues, residue_index, bonds = _residues(atoms, names, numbers, chainids, atomtypes)
        chains = _chains(residues)
        for chain in chains:
            _check_chain([residues[r] for r in chain], atoms.positions, atomtypes)
        _check_disulfides(residues, atoms.positions, atomtypes)
        return cls(residues, chains, residue_index, bonds)


def _residues(
    atoms: Atoms, names: np.ndarray, numbers: np.ndarray, chainids: np.ndarray, atomtypes: np.ndarray
) -> tuple[list[Residue], np.ndarray, np.ndarray]:
    keys: dict[tuple[str, int, str], list[int]] = {}
    last = None
    for i, key in enumerate(zip(chainids.tolist(), numbers.tolist(), names.tolist())):
        if key != last and key in keys:
            raise ValueError(
                f"chain {key[0]} {key[2]} {key[1]} appears twice (its atoms are not together): "
                "give every residue of a chain its own number, and every chain its own id"
            )
        keys.setdefault(key, []).append(i)
        last = key
    residues, bonds = [], []
    residue_index = np.empty(len(atoms), dtype=np.int64)
    for r, ((chain, number, name), members) in enumerate(keys.items()):
        residue = _residue(atoms, chain, name, number, np.asarray(members), atomtypes, bonds)
        residues.append(residue)
        residue_index[residue.atoms] = r
    return residues, residue_index, np.asarray(bonds, dtype=np.int64).reshape(-1, 2)


def _residue(
    atoms: Atoms, chain: str, name: str, number: int, members: np.ndarray, atomtypes: np.ndarray, bonds: list
) -> Residue:
    label = f"chain {chain} {name} {number}"
    if name not in AMINO_ACIDS and name not in CAPS:
        why = "a disulfide-bonded cysteine" if name == "CYX" else "water, an ion, a ligand or a modified residue"
        raise ValueError(
            f"{label}: not a standard amino acid or ACE/NME cap ({why}); fragmentation handles plain "
            "proteins only: remove it, or run without fragmentation"
        )
    z = atoms.numbers[members]
    heavy, hydrogens = members[z != 1], members[z == 1]
    if len(hydrogens) == 0:
        raise ValueError(
            f"{label} has no hydrogens: fragmentation needs an all-atom protein "
            "(visnet.proteins.read_protein adds them)"
        )
    pos = atoms.positions
    groups = {int(i): heavy_group(name, atomtypes[i]) for i in heavy}
    radii = covalent_radii[atoms.numbers[heavy]]
    dist = np.linalg.norm(pos[heavy, None] - pos[None, heavy], axis=-1)
    a, b = np.nonzero(np.triu(dist < BOND_FACTOR * (radii[:, None] + radii[None, :]), k=1))
    bonds.extend(zip(heavy[a].tolist(), heavy[b].tolist()))
    to_heavy = np.linalg.norm(pos[hydrogens, None] - pos[None, heavy], axis=-1)
    nearest = to_heavy.argmin(axis=1)
    # S-H is longer than C/N/O-H (1.34 Å; 1.42 Å as RDKit builds it): the limit scales with the radii
    longest = np.maximum(MAX_X_H, BOND_FACTOR * (radii + covalent_radii[1]))
    for row, (h, k) in enumerate(zip(hydrogens.tolist(), nearest.tolist())):
        if to_heavy[row, k] > longest[k]:
            raise ValueError(f"{label}: hydrogen {atomtypes[h]} is bonded to no heavy atom of its residue")
        groups[h] = groups[int(heavy[k])]
        bonds.append((int(heavy[k]), h))
    return Residue(chain, name, number, members, np.asarray([groups[int(i)] for i in members]))


def _chains(residues: list[Residue]) -> list[list[int]]:
    chains: dict[str, list[int]] = {}
    for r, residue in enumerate(residues):
        chains.setdefault(residue.chain, []).append(r)
    return list(chains.values())


def _check_chain(chain: list[Residue], pos: np.ndarray, atomtypes: np.ndarray) -> None:
    for k, residue in enumerate(chain):
        needed = {"ACE": (("CH3",), ("C",)), "NME": (("N",), ("C", "CH3"))}.get(residue.name, (("N",), ("CA",), ("C",)))
        missing = [names[0] for names in needed if all(residue.atom(n, atomtypes) is None for n in names)]
        if missing:
            raise ValueError(f"{residue.label}: missing backbone atom(s) {', '.join(missing)}")
        if residue.name == "ACE" and k != 0 or residue.name == "NME" and k != len(chain) - 1:
            raise ValueError(f"{residue.label}: an {residue.name} cap inside the chain, not at its end")
        if k:
            _check_peptide_bond(chain[k - 1], residue, pos, atomtypes)


def _check_peptide_bond(prev: Residue, residue: Residue, pos: np.ndarray, atomtypes: np.ndarray) -> None:
    c, n = prev.atom("C", atomtypes), residue.atom("N", atomtypes)
    if c is None or n is None:
        raise ValueError(f"{residue.label}: no peptide bond to {prev.label} (C or N missing)")
    length = float(np.linalg.norm(pos[c] - pos[n]))
    if length > MAX_PEPTIDE_BOND:
        raise ValueError(
            f"chain break in chain {residue.chain} between {prev.name} {prev.number} and {residue.name} "
            f"{residue.number} (C-N {length:.1f} Å): missing residues? (read_protein(..., fix=True) builds them)"
        )


def _check_disulfides(residues: list[Residue], pos: np.ndarray, atomtypes: np.ndarray) -> None:
    sulfurs = [(r, r.atom("SG", atomtypes)) for r in residues if r.name in ("CYS", "CYX", "CYM")]
    sulfurs = [(r, s) for r, s in sulfurs if s is not None]
    for k, (r1, s1) in enumerate(sulfurs):
        for r2, s2 in sulfurs[k + 1 :]:
            if np.linalg.norm(pos[s1] - pos[s2]) < MAX_DISULFIDE:
                raise ValueError(
                    f"disulfide bond between {r1.label} and {r2.label}: not supported by the ai2bmd "
                    "fragmentation (yet); run without fragmentation"
                )
