"""Starting structures for MD: any ASE-readable file, a bundled molecule, or a SMILES string."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read

__all__ = ["STRUCTURES_DIR", "named_structures", "load_structure", "atoms_from_smiles"]

STRUCTURES_DIR = Path(__file__).resolve().parents[1] / "pretrained" / "structures"
# Strings that are meant as file names (so a typo gives "file not found", not "invalid SMILES").
_FILE_LIKE = re.compile(r"[/\\]|\.(xyz|extxyz|traj|pdb|cif|vasp|poscar|xsf|mol|sdf|json|db|gen|in|out)$", re.I)


def named_structures() -> dict[str, Path]:
    """Bundled molecules: name (e.g. "aspirin") -> xyz file (Å)."""
    return {p.stem: p for p in sorted(STRUCTURES_DIR.glob("*.xyz"))}


def _clean(atoms: Atoms, name: str, source: str) -> Atoms:
    """A bare copy (numbers, positions Å, cell, pbc, momenta if any) without stale calculator data."""
    clean = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    if atoms.has("momenta"):
        clean.set_momenta(atoms.get_momenta(), apply_constraint=False)
    clean.info.update(name=name, source=source)
    return clean


def _read_file(path: Path, index: int) -> Atoms:
    try:
        atoms = read(path, index=index)
    except Exception as err:  # ASE raises many kinds for unreadable input
        raise ValueError(f"cannot read structure file {path}: {type(err).__name__}: {str(err)[:200]}") from None
    if isinstance(atoms, list):
        atoms = atoms[-1]
    if len(atoms) == 0:
        raise ValueError(f"structure file {path} holds no atoms")
    return atoms


def atoms_from_smiles(smiles: str, seed: int = 0) -> Atoms:
    """A 3D conformer of ``smiles`` (hydrogens added): RDKit ETKDGv3 embedding with a fixed seed,
    then MMFF94 (UFF when MMFF lacks parameters) relaxation. Positions in Å.

    Raises:
        ValueError: invalid SMILES, or no 3D embedding found.
        ImportError: RDKit is not installed.
    """
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import AllChem
    except ImportError as err:  # pragma: no cover - rdkit is a dev/smiles extra
        raise ImportError("SMILES input needs RDKit: pip install 'visnet[smiles]'") from err
    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        raise ValueError(f"invalid SMILES {smiles!r}: RDKit cannot parse it")
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise ValueError(f"RDKit could not embed a 3D conformer for SMILES {smiles!r}")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    elif AllChem.UFFHasAllMoleculeParams(mol):
        AllChem.UFFOptimizeMolecule(mol, maxIters=2000)
    numbers = [atom.GetAtomicNum() for atom in mol.GetAtoms()]
    positions = np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)
    return Atoms(numbers=numbers, positions=positions)


def load_structure(spec: str, seed: int = 0, index: int = -1) -> Atoms:
    """The starting structure named by ``spec``.

    Args:
        spec: an ASE-readable file; a bundled molecule name (``named_structures()``: aspirin,
            ethanol, ...); or a SMILES string. Prefixes ``file:``, ``name:``, ``smiles:`` force
            the interpretation.
        seed: RDKit embedding seed for SMILES input.
        index: frame of a multi-frame file (ASE index; default the last frame).

    Returns:
        Atoms (Å) with ``info["name"]`` (used to name output files) and ``info["source"]``, the
        file's momenta if it has them (e.g. a ``.traj`` frame), and no calculator.

    Raises:
        FileNotFoundError: ``spec`` looks like a file name but no such file exists.
        ValueError: unreadable file, invalid SMILES, or nothing ``spec`` could mean.
    """
    kind, _, rest = spec.partition(":")
    if kind in ("file", "name", "smiles") and rest:
        return _load_as(kind, rest, seed, index)
    if Path(spec).is_file():
        return _load_as("file", spec, seed, index)
    key = spec.strip().lower().replace("-", "_").replace(" ", "_")
    if key in named_structures():
        return _load_as("name", key, seed, index)
    if _FILE_LIKE.search(spec):
        raise FileNotFoundError(f"structure file not found: {spec}")
    try:
        return _load_as("smiles", spec, seed, index)
    except ValueError:
        raise ValueError(
            f"{spec!r} is not a file, a bundled molecule ({', '.join(named_structures())}) or a valid SMILES"
        ) from None


def _load_as(kind: str, value: str, seed: int, index: int) -> Atoms:
    if kind == "file":
        path = Path(value)
        if not path.is_file():
            raise FileNotFoundError(f"structure file not found: {path}")
        return _clean(_read_file(path, index), path.stem, str(path))
    if kind == "name":
        files = named_structures()
        key = value.strip().lower().replace("-", "_").replace(" ", "_")
        if key not in files:
            raise ValueError(f"no bundled molecule named {value!r}; available: {', '.join(files)}")
        return _clean(_read_file(files[key], 0), key, f"bundled {files[key].name}")
    atoms = atoms_from_smiles(value, seed)
    source = f"SMILES {value} (RDKit ETKDGv3 + MMFF, seed {seed})"
    return _clean(atoms, f"smiles_{atoms.get_chemical_formula()}", source)
