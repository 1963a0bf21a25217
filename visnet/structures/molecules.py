"""Molecules as ``ase.Atoms`` (Å) from files, bundled names, SMILES strings and RDKit molecules.

Used by the MD drivers (one starting structure: ``load_structure``) and by ``visnet.predict``
(every frame of a file: ``load_structures``; RDKit molecules: ``atoms_from_mol``).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from visnet.files.paths import refuse_folder
from visnet.structures.read import read_atoms

__all__ = [
    "FRAGMENT_GAP",
    "SMILES_METHOD",
    "STRUCTURES_DIR",
    "atoms_from_mol",
    "atoms_from_smiles",
    "embed_smiles",
    "is_file",
    "is_rdkit_mol",
    "load_structure",
    "load_structures",
    "named_structures",
    "place_apart",
    "read_frames",
]

STRUCTURES_DIR = Path(str(resources.files("visnet"))) / "pretrained" / "structures"
SMILES_METHOD = "RDKit ETKDGv3 + MMFF"
FRAGMENT_GAP = 3.0  # Å: smallest distance between atoms of different fragments of a SMILES ("CCO.O")
# Strings that are meant as file names (so a typo gives "file not found", not "invalid SMILES").
_FILE_LIKE = re.compile(r"[/\\]|\.(xyz|extxyz|traj|pdb|cif|vasp|poscar|xsf|mol|sdf|json|db|gen|in|out)$", re.I)
_KINDS = ("file", "name", "smiles")


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


def is_file(path: str | Path) -> bool:
    """Whether ``path`` names an existing file; False (not OSError) for strings no file system can
    hold as a name: longer than the name limit (a long SMILES), embedded NUL bytes."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def _read_file(path: Path, index: int) -> Atoms:
    """Frame ``index`` of ``path`` (Python indexing); ValueError naming the file when the index is
    past either end (ASE itself fails obscurely past the end and wraps some negative indices)."""
    frames = read_atoms(path, index=":")
    if not frames:
        raise ValueError(f"structure file {path} holds no structures")
    if not -len(frames) <= index < len(frames):
        raise ValueError(
            f"frame {index} is past the end of {path}: it holds {len(frames)} frame(s) "
            f"(valid frames: {-len(frames)} to {len(frames) - 1})"
        )
    atoms = frames[index]
    if len(atoms) == 0:
        raise ValueError(f"structure file {path} holds no atoms")
    return atoms


def read_frames(path: str | Path, index: str | int | slice = ":") -> list[Atoms]:
    """Every frame of an ASE-readable file (or those selected by ``index``), positions in Å.

    Returns:
        Bare ``Atoms`` with ``info["name"]`` (the file stem), ``info["source"]`` (the path) and
        ``info["frame"]`` (frame number within the selection).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file cannot be read, holds no structures, or a frame has no atoms
            (the message names the file and frame).
    """
    path = Path(path)
    refuse_folder(path, "structure file")
    if not is_file(path):
        raise FileNotFoundError(f"structure file not found: {path}")
    frames = read_atoms(path, index=index)
    if not frames:
        raise ValueError(f"structure file {path} holds no structures")
    out = []
    for k, atoms in enumerate(frames):
        if len(atoms) == 0:
            raise ValueError(f"structure file {path}: frame {k} holds no atoms")
        clean = _clean(atoms, path.stem, str(path))
        clean.info["frame"] = k
        out.append(clean)
    return out


# --------------------------------------------------------------------------- RDKit


def _rdkit() -> tuple[Any, Any]:
    """(Chem, AllChem) with RDKit's logging silenced; ImportError with the install hint."""
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import AllChem
    except ImportError as err:  # pragma: no cover - rdkit is a dev/smiles extra
        raise ImportError("SMILES / RDKit input needs RDKit: pip install 'visnet[smiles]'") from err
    RDLogger.DisableLog("rdApp.*")
    return Chem, AllChem


def is_rdkit_mol(obj: Any) -> bool:
    """Whether ``obj`` is an ``rdkit.Chem.Mol`` (False when RDKit is not installed)."""
    if type(obj).__module__.split(".")[0] != "rdkit":
        return False
    from rdkit import Chem

    return isinstance(obj, Chem.Mol)


def _parses_as_smiles(text: str) -> bool:
    try:
        Chem, _ = _rdkit()
    except ImportError:
        return False
    return _mol_from_smiles(Chem, text) is not None


def _mol_from_smiles(Chem: Any, smiles: str) -> Any:
    """RDKit's molecule for ``smiles``, None when it does not parse. Whitespace inside is refused:
    RDKit reads ``"C @4 x"`` as methane named "@4 x" (anything after a space is a title)."""
    if any(c.isspace() for c in smiles.strip()):
        return None
    return Chem.MolFromSmiles(smiles.strip())


def _quote(smiles: str, limit: int = 80) -> str:
    """``repr`` of a SMILES for messages, shortened in the middle beyond ``limit`` characters."""
    if len(smiles) <= limit:
        return repr(smiles)
    return repr(f"{smiles[: limit // 2]}...{smiles[-limit // 4 :]}") + f" ({len(smiles)} characters)"


def _check_closed_shell_neutral(Chem: Any, mol: Any, smiles: str) -> None:
    """Refuse ions and radicals: the models are trained on neutral closed-shell molecules.

    Charge-separated neutral groups (nitro ``[N+](=O)[O-]``, zwitterions) are accepted; a net charge
    of the whole SMILES or of one of its fragments (a salt such as ``[Na+].[Cl-]``) is not.
    """
    for k, fragment in enumerate(Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)):
        charge = Chem.GetFormalCharge(fragment)
        if charge:
            which = f"fragment {k + 1} ({Chem.MolToSmiles(fragment)})" if "." in smiles else "the molecule"
            raise ValueError(
                f"SMILES {_quote(smiles)}: {which} has net charge {charge:+d}; only neutral molecules are "
                "supported (the models are trained on neutral closed-shell molecules)"
            )
    radicals = [a.GetIdx() for a in mol.GetAtoms() if a.GetNumRadicalElectrons()]
    if radicals:
        symbols = ", ".join(f"{mol.GetAtomWithIdx(i).GetSymbol()}{i}" for i in radicals[:10])
        raise ValueError(
            f"SMILES {_quote(smiles)} is a radical (unpaired electrons on atoms {symbols}); only closed-shell "
            "molecules are supported (the models are trained on neutral closed-shell molecules)"
        )


def _embed_fragment(mol: Any, seed: int, smiles: str) -> np.ndarray:
    """ETKDGv3 + MMFF94 (UFF fallback) positions (Å) of one connected molecule with hydrogens."""
    _, AllChem = _rdkit()
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise ValueError(f"RDKit could not embed a 3D conformer for SMILES {_quote(smiles)}")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    elif AllChem.UFFHasAllMoleculeParams(mol):
        AllChem.UFFOptimizeMolecule(mol, maxIters=2000)
    return np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)


def place_apart(fragments: list[np.ndarray], gap: float = FRAGMENT_GAP) -> list[np.ndarray]:
    """Translate fragments (each an (n, 3) array, Å) along x, one after the other, so that the
    bounding boxes of consecutive fragments are ``gap`` apart in x: every distance between atoms of
    different fragments is then at least ``gap``. The first fragment does not move."""
    placed = [fragments[0]]
    edge = float(fragments[0][:, 0].max())
    for positions in fragments[1:]:
        shift = edge + gap - float(positions[:, 0].min())
        offset = placed[0].mean(axis=0) - positions.mean(axis=0)  # same y, z centre as the first
        moved = positions + np.array([shift, offset[1], offset[2]])
        placed.append(moved)
        edge = float(moved[:, 0].max())
    return placed


def embed_smiles(smiles: str, seed: int = 0) -> Any:
    """An RDKit molecule with hydrogens and one 3D conformer (Å) for ``smiles``: ETKDGv3 embedding
    with a fixed seed, then MMFF94 (UFF when MMFF lacks parameters) relaxation.

    A SMILES of several fragments (``"CCO.O"``) gets each fragment embedded and relaxed on its own,
    then the fragments are placed side by side along x with at least ``FRAGMENT_GAP`` (3 Å) between
    any two atoms of different fragments (they are never embedded on top of each other).

    Raises:
        ValueError: invalid SMILES, an ion (net charge of the molecule or of one fragment; charge-
            separated neutral groups such as nitro are fine), a radical, or no 3D embedding found
            (the message quotes the SMILES).
        ImportError: RDKit is not installed.
    """
    Chem, _ = _rdkit()
    mol = _mol_from_smiles(Chem, smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        space = " (it contains whitespace)" if any(c.isspace() for c in smiles.strip()) else ""
        raise ValueError(f"invalid SMILES {_quote(smiles)}: RDKit cannot parse it{space}")
    _check_closed_shell_neutral(Chem, mol, smiles)
    mol = Chem.AddHs(mol)
    groups = Chem.GetMolFrags(mol)
    if len(groups) == 1:
        _embed_fragment(mol, seed, smiles)
        return mol
    fragments = Chem.GetMolFrags(mol, asMols=True)
    placed = place_apart([_embed_fragment(Chem.Mol(f), seed, smiles) for f in fragments])
    conformer = Chem.Conformer(mol.GetNumAtoms())
    for indices, positions in zip(groups, placed):
        for index, xyz in zip(indices, positions):
            conformer.SetAtomPosition(int(index), xyz.tolist())
    conformer.Set3D(True)
    mol.AddConformer(conformer, assignId=True)
    return mol


def atoms_from_smiles(smiles: str, seed: int = 0) -> Atoms:
    """A 3D conformer of ``smiles`` (hydrogens added; see ``embed_smiles``). Positions in Å.

    Raises:
        ValueError: invalid SMILES, or no 3D embedding found.
        ImportError: RDKit is not installed.
    """
    mol = embed_smiles(smiles, seed)
    numbers = [atom.GetAtomicNum() for atom in mol.GetAtoms()]
    positions = np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)
    return Atoms(numbers=numbers, positions=positions)


def _mol_label(mol: Any) -> str:
    Chem, _ = _rdkit()
    try:
        return Chem.MolToSmiles(Chem.RemoveHs(mol))
    except Exception:  # noqa: BLE001 - a label for messages only
        return f"<RDKit Mol with {mol.GetNumAtoms()} atoms>"


def atoms_from_mol(mol: Any, conf_id: int = -1) -> Atoms:
    """``Atoms`` (Å) from an RDKit molecule with explicit hydrogens and a 3D conformer.

    Args:
        mol: ``rdkit.Chem.Mol``, e.g. ``Chem.AddHs(mol)`` then ``AllChem.EmbedMolecule(mol)``.
        conf_id: conformer to use (-1: the default one).

    Returns:
        Atoms with ``info["name"]`` and ``info["smiles"]`` (canonical SMILES without hydrogens)
        and ``info["source"]``.

    Raises:
        ValueError: no atoms, a dummy atom, no conformer, a 2D conformer, or hydrogens that are
            implicit (no coordinates); the message names the molecule.
    """
    label = _mol_label(mol)
    if mol.GetNumAtoms() == 0:
        raise ValueError("RDKit molecule has no atoms")
    numbers = [atom.GetAtomicNum() for atom in mol.GetAtoms()]
    if 0 in numbers:
        raise ValueError(f"RDKit molecule {label} has a dummy atom (atomic number 0) at index {numbers.index(0)}")
    if mol.GetNumConformers() == 0:
        raise ValueError(
            f"RDKit molecule {label} has no conformer: add hydrogens and embed it first "
            "(Chem.AddHs(mol); AllChem.EmbedMolecule(mol)), or pass the SMILES string"
        )
    conf = mol.GetConformer(conf_id)
    if not conf.Is3D():
        raise ValueError(f"RDKit molecule {label} has a 2D conformer; a 3D one is needed (AllChem.EmbedMolecule)")
    implicit = [a.GetIdx() for a in mol.GetAtoms() if a.GetTotalNumHs() > 0]
    if implicit:
        raise ValueError(
            f"RDKit molecule {label} has implicit hydrogens without coordinates (on atoms {implicit[:10]}): "
            "use Chem.AddHs(mol, addCoords=True) before prediction"
        )
    atoms = Atoms(numbers=numbers, positions=np.asarray(conf.GetPositions(), dtype=np.float64))
    atoms.info.update(name=label, smiles=label, source=f"RDKit Mol {label} (conformer {conf.GetId()})")
    return atoms


# --------------------------------------------------------------------------- strings


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def classify_spec(spec: str) -> tuple[str, str]:
    """("file" | "name" | "smiles", value) for a structure string (see ``load_structure``).

    A string that looks like a path but names no file is a SMILES only if RDKit parses it
    (stereo bonds like ``F/C=C/F`` contain slashes); otherwise FileNotFoundError.
    """
    kind, _, rest = spec.partition(":")
    if kind in _KINDS and rest:
        return kind, rest
    if is_file(spec):
        return "file", spec
    if _key(spec) in named_structures():
        return "name", _key(spec)
    refuse_folder(spec, "structure file")
    if _FILE_LIKE.search(spec) and not _parses_as_smiles(spec):
        raise FileNotFoundError(f"structure file not found: {spec}")
    return "smiles", spec


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
    kind, value = classify_spec(spec)
    if kind != "smiles" or spec.startswith("smiles:"):
        return _load_as(kind, value, seed, index)
    if not _parses_as_smiles(value):
        _rdkit()  # ImportError with the install hint when RDKit is missing
        raise ValueError(
            f"{_quote(spec)} is not a file, a bundled molecule ({', '.join(named_structures())}) or a valid SMILES"
        )
    return _load_as("smiles", value, seed, index)


def load_structures(spec: str, seed: int = 0, index: str | int | slice = ":") -> list[Atoms]:
    """Like ``load_structure`` but a file gives all its frames (``index``, default every frame).

    SMILES results carry ``info["smiles"]`` (the string as given); file frames ``info["frame"]``.

    Raises:
        FileNotFoundError: ``spec`` looks like a file name but no such file exists.
        ValueError: unreadable file (named), invalid SMILES (quoted), or nothing ``spec`` could mean.
    """
    kind, value = classify_spec(spec)
    if kind == "file":
        return read_frames(value, index)
    if kind == "name":
        return [_load_as(kind, value, seed, -1)]
    if not _parses_as_smiles(value):
        _rdkit()  # ImportError with the install hint when RDKit is missing
        raise ValueError(
            f"invalid SMILES {_quote(value)}: RDKit cannot parse it (nor is it a file or a bundled molecule: "
            f"{', '.join(named_structures())})"
        )
    atoms = _load_as("smiles", value, seed, -1)
    atoms.info["smiles"] = value
    return [atoms]


def _load_as(kind: str, value: str, seed: int, index: int) -> Atoms:
    if kind == "file":
        path = Path(value)
        refuse_folder(path, "structure file")
        if not is_file(path):
            raise FileNotFoundError(f"structure file not found: {path}")
        return _clean(_read_file(path, index), path.stem, str(path))
    if kind == "name":
        files = named_structures()
        key = _key(value)
        if key not in files:
            raise ValueError(f"no bundled molecule named {value!r}; available: {', '.join(files)}")
        return _clean(_read_file(files[key], 0), key, f"bundled {files[key].name}")
    atoms = atoms_from_smiles(value, seed)
    source = f"SMILES {value} ({SMILES_METHOD}, seed {seed})"
    return _clean(atoms, f"smiles_{atoms.get_chemical_formula()}", source)
