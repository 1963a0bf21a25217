"""Peptides built from their sequence with RDKit (neutral, optionally capped ACE ... NME), as
``ase.Atoms`` with the residue arrays of ``visnet.proteins.topology`` and Amber14 parameters."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from visnet.files.atomic import atomic_write_text
from visnet.proteins.forcefield import attach_amber_parameters

__all__ = ["peptide_from_sequence", "peptide_pdb", "openmm_topology_from_bonds"]


def peptide_from_sequence(
    sequence: str, caps: bool = True, seed: int = 0, amber: bool = True, relax: bool = False
) -> Atoms:
    """A 3D peptide from its one-letter sequence (RDKit ETKDG embedding, all hydrogens).

    Args:
        sequence: one-letter amino-acid codes, e.g. "GYDPETGTWG" (chignolin).
        caps: add an ACE cap before the first and an NME cap after the last residue (neutral
            ends, as in AI2BMD's units); without, the termini are neutral NH2 and COOH.
        seed: embedding seed.
        amber: attach Amber14 non-bonded parameters (needs ``caps``: Amber has no neutral termini).
        relax: minimise the embedded conformer with MMFF94 (RDKit), 2,000 steps at most.

    Returns:
        Atoms (Å) ordered residue by residue (each residue's heavy atoms, then its hydrogens) with
        arrays residuenames, residuenumbers, atomtypes, chainids (and mm_* with ``amber``).

    Raises:
        ValueError: a letter RDKit does not know, or an embedding failure.
    """
    from rdkit.Chem import AllChem

    mol = _embedded(sequence, caps, seed)
    if relax:
        AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    atoms, order = _to_atoms(mol)
    if amber:
        if not caps:
            raise ValueError("Amber14 parameters need capped peptides (caps=True): Amber has no neutral termini")
        attach_amber_parameters(atoms, openmm_topology_from_bonds(atoms, _bonds(mol, order)))
    return atoms


def peptide_pdb(sequence: str, path: str | os.PathLike, caps: bool = True, seed: int = 0) -> Path:
    """Write the heavy atoms of an embedded peptide (as ``peptide_from_sequence``) to a PDB file.

    For OpenMM: ``read_protein`` / ``openmm_protein`` then add the hydrogens of the Amber templates
    at a pH (charged side chains at pH 7, unlike ``peptide_from_sequence``'s neutral ones), e.g. to
    solvate the peptide. Returns ``path``.
    """
    from rdkit import Chem

    heavy = Chem.RemoveHs(_embedded(sequence, caps, seed))
    # residue by residue (the caps were appended last): a PDB residue must be contiguous
    order = sorted(
        range(heavy.GetNumAtoms()), key=lambda i: heavy.GetAtomWithIdx(i).GetPDBResidueInfo().GetResidueNumber()
    )
    return atomic_write_text(path, Chem.MolToPDBBlock(Chem.RenumberAtoms(heavy, order)))


def _embedded(sequence: str, caps: bool, seed: int) -> Any:
    """The RDKit molecule of the peptide, all hydrogens, one ETKDG conformer."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.MolFromSequence(sequence)
    if mol is None or mol.GetNumAtoms() == 0:
        raise ValueError(f"invalid peptide sequence {sequence!r} (one-letter amino-acid codes)")
    if caps:
        mol = _add_caps(Chem, mol, len(sequence))
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    params.useRandomCoords = mol.GetNumAtoms() > 300  # much faster for long chains
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise ValueError(f"RDKit could not embed the peptide {sequence!r}")
    return mol


def _add_caps(Chem: Any, mol: Any, n: int) -> Any:
    """ACE on the N-terminal N, the C-terminal OXT turned into NME's N (+ its methyl)."""
    rw = Chem.RWMol(mol)
    info = {a.GetIdx(): a.GetPDBResidueInfo() for a in rw.GetAtoms()}
    n_term = next(i for i, r in info.items() if r.GetResidueNumber() == 1 and r.GetName().strip() == "N")
    oxt = next(i for i, r in info.items() if r.GetName().strip() == "OXT")

    def add(element: int, name: str, residue: str, number: int) -> int:
        atom = Chem.Atom(element)
        res = Chem.AtomPDBResidueInfo(f" {name:<3}", residueName=residue, residueNumber=number, chainId="A")
        atom.SetMonomerInfo(res)
        return rw.AddAtom(atom)

    c, o, ch3 = add(6, "C", "ACE", 0), add(8, "O", "ACE", 0), add(6, "CH3", "ACE", 0)
    rw.AddBond(c, o, Chem.BondType.DOUBLE)
    rw.AddBond(c, ch3, Chem.BondType.SINGLE)
    rw.AddBond(c, n_term, Chem.BondType.SINGLE)
    rw.GetAtomWithIdx(oxt).SetAtomicNum(7)
    rw.GetAtomWithIdx(oxt).SetMonomerInfo(
        Chem.AtomPDBResidueInfo(" N  ", residueName="NME", residueNumber=n + 1, chainId="A")
    )
    methyl = add(6, "C", "NME", n + 1)
    rw.AddBond(oxt, methyl, Chem.BondType.SINGLE)
    out = rw.GetMol()
    Chem.SanitizeMol(out)
    return out


def _to_atoms(mol: Any) -> tuple[Atoms, list[int]]:
    """Atoms ordered by residue; hydrogens take their heavy atom's residue. Returns the order too."""
    heavy_info = {}
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() > 1:
            r = atom.GetPDBResidueInfo()
            heavy_info[atom.GetIdx()] = (r.GetResidueNumber(), r.GetResidueName().strip(), r.GetName().strip())
    residue_of, names = {}, {}
    counts: dict[tuple[int, str], int] = {}
    for atom in mol.GetAtoms():
        i = atom.GetIdx()
        if i in heavy_info:
            residue_of[i], names[i] = heavy_info[i][:2], heavy_info[i][2]
            continue
        heavy = atom.GetNeighbors()[0].GetIdx()
        residue_of[i] = heavy_info[heavy][:2]
        stem = "H" + heavy_info[heavy][2][1:]
        counts[(heavy, stem)] = counts.get((heavy, stem), 0) + 1
        names[i] = f"{stem}{counts[(heavy, stem)]}"[:4]
    order = sorted(
        range(mol.GetNumAtoms()), key=lambda i: (residue_of[i][0], mol.GetAtomWithIdx(i).GetAtomicNum() == 1, i)
    )
    pos = mol.GetConformer().GetPositions()[order]
    atoms = Atoms(numbers=[mol.GetAtomWithIdx(i).GetAtomicNum() for i in order], positions=pos)
    atoms.set_array("residuenames", np.array([residue_of[i][1] for i in order], dtype="U3"))
    atoms.set_array("residuenumbers", np.array([residue_of[i][0] for i in order], dtype=np.int64))
    atoms.set_array("atomtypes", np.array([names[i] for i in order], dtype="U4"))
    atoms.set_array("chainids", np.full(len(order), "A", dtype="U1"))
    return atoms, order


def _bonds(mol: Any, order: list[int]) -> np.ndarray:
    new = np.empty(len(order), dtype=np.int64)
    new[np.asarray(order)] = np.arange(len(order))
    return np.array([[new[b.GetBeginAtomIdx()], new[b.GetEndAtomIdx()]] for b in mol.GetBonds()], dtype=np.int64)


def openmm_topology_from_bonds(atoms: Atoms, bonds: np.ndarray) -> Any:
    """An ``openmm.app.Topology`` of a protein ``atoms`` (residue arrays) with explicit ``bonds`` (K, 2)."""
    import openmm.app as app

    top = app.Topology()
    chains: dict[str, Any] = {}
    residues: dict[tuple, Any] = {}
    made = []
    for i, number in enumerate(atoms.numbers.tolist()):
        chain_id = str(atoms.arrays["chainids"][i])
        chain = chains.get(chain_id) or chains.setdefault(chain_id, top.addChain(chain_id))
        key = (chain_id, int(atoms.arrays["residuenumbers"][i]), str(atoms.arrays["residuenames"][i]))
        if key not in residues:
            residues[key] = top.addResidue(key[2], chain, str(key[1]))
        made.append(
            top.addAtom(str(atoms.arrays["atomtypes"][i]), app.Element.getByAtomicNumber(number), residues[key])
        )
    for a, b in bonds.tolist():
        top.addBond(made[a], made[b])
    return top
