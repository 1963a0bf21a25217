"""Residue names and the backbone groups that the AI2BMD fragmentation cuts between.

Every residue's atoms fall into four groups: the amide ``N`` group (N and its hydrogens), the
``CA`` group (CA and its hydrogens), the carbonyl ``C`` group (C, O, OXT and HXT) and the side
chain (everything else). Caps from force fields (ACE, NME) are residues with only some groups.
"""

from __future__ import annotations

__all__ = [
    "AMINO_ACIDS",
    "CAPS",
    "GROUP_NAMES",
    "HEAVY_GROUPS",
    "X_H_BOND_LENGTH",
    "heavy_group",
]

# The 20 standard amino acids and the protonation variants OpenMM/Amber name (Å-free names).
AMINO_ACIDS = frozenset(
    "ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE LEU LYS MET PHE PRO SER THR TRP TYR VAL "
    "ASH GLH LYN HID HIE HIP HSD HSE HSP CYM ARN".split()
)
# Capping residues: ACE (acetyl, N-terminal) and NME (N-methyl amide, C-terminal).
CAPS = frozenset({"ACE", "NME"})

GROUP_NAMES = ("N", "CA", "C", "side")  # group codes 0, 1, 2, 3

# Heavy atom name -> group code, per kind of residue; names not listed are side chain (3).
HEAVY_GROUPS: dict[str, dict[str, int]] = {
    "amino": {"N": 0, "CA": 1, "C": 2, "O": 2, "OXT": 2},
    "ACE": {"CH3": 1, "C": 2, "O": 2},
    "NME": {"N": 0, "C": 1, "CH3": 1},
}

# Bond length (Å) of a cap hydrogen on an atom of this element: equilibrium X-H lengths
# (Amber ff14SB r0 values for C-H, N-H, O-H, S-H), fixed so the cap follows the cut bond exactly.
X_H_BOND_LENGTH: dict[int, float] = {6: 1.09, 7: 1.01, 8: 0.96, 16: 1.336}


def heavy_group(residue_name: str, atom_name: str) -> int:
    """Group code (0 N, 1 CA, 2 C, 3 side chain) of a heavy atom of ``residue_name``."""
    table = HEAVY_GROUPS[residue_name] if residue_name in CAPS else HEAVY_GROUPS["amino"]
    return table.get(atom_name, 3)
