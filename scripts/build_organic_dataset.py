"""Build the training and test sets of the general organic model (bundled as ``default``).

Elements H C N O F S, one level of theory (GFN2-xTB, tblite), energies in eV and forces in eV/Å.
Deterministic (every random choice is seeded) and resumable: every stage writes its file
atomically and is skipped when the file exists; labelling resumes frame by frame
(``visnet.labelling.label``). Nothing it writes is committed: it all goes under ``--out``.

Stages (all run by default, in this order):

1. ``sample``: geometries without labels.
   - capped amino acids ACE-X-NME (20 residues, plus the charged forms of D, E, K, R, H),
     capped dipeptides and tripeptides ACE-XY(Z)-NME, and di/tripeptides with free termini
     (neutral NH2/COOH and charged NH3+/COO-); no peptide longer than three residues, so
     proteins stay a blind test;
   - small molecules with sulfur and fluorine, and drug-like molecules larger than QM9's;
   - each: RDKit ETKDG conformers, MMFF-relaxed, then Gaussian Cartesian displacements
     (``SIGMAS`` Å per component; 0 keeps the conformer) to sample around each minimum;
   - the QM9 test molecules: QM9 molecules that are *not* in the shared xTB QM9 set, at their
     B3LYP geometry displaced by 0.05 Å.
2. ``label``: GFN2-xTB energies and forces of every sampled geometry, with the total charge
   from RDKit's formal charges (``atoms.info["charge"]``).
3. ``assemble``: ``train.extxyz`` = the shared xTB QM9 set (equilibrium and displaced frames;
   frames whose largest force component exceeds ``--max-force`` eV/Å are left out: strained
   structures MD never visits) + ``--frames-per-molecule`` frames of each of the ten shared
   xTB MD sets + the labelled generated frames. ``test_qm9.extxyz`` is the held-out QM9 test.

    python scripts/build_organic_dataset.py --out runs/organic            # everything
    python scripts/build_organic_dataset.py --out runs/organic --stage sample

Timing (1 thread): sampling ~3 min, labelling ~5 min (GFN2-xTB takes 15-60 ms per structure
here), assembling ~2 min.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from visnet.files.atomic import atomic_open

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
QM9_XTB = SHARED / "xtb_qm9" / "qm9_gfn2xtb_12k.npz"
QM9_FULL = SHARED / "qm9" / "qm9_full.npz"
XTB_MD = SHARED / "xtb"
TEN_MOLECULES = (
    "aspirin",
    "azobenzene",
    "benzene",
    "ethanol",
    "malonaldehyde",
    "naphthalene",
    "paracetamol",
    "salicylic_acid",
    "toluene",
    "uracil",
)
KCAL_PER_MOL = units.kcal / units.mol  # eV
SIGMAS = (0.0, 0.04, 0.08)  # Å, Gaussian displacement per Cartesian component
QM9_TEST_SIGMA = 0.05  # Å
FRAMES_PER_MOLECULE = 600  # evenly strided frames of each shared xTB MD set (of 2,000)

# One residue as a SMILES piece "N ... C(=O)" (L form); {a} and {b} are ring-closure digits made
# unique per position when pieces are joined. Neutral forms, then the charged ones ("D-" etc.).
RESIDUES: dict[str, str] = {
    "G": "NCC(=O)",
    "A": "N[C@@H](C)C(=O)",
    "V": "N[C@@H](C(C)C)C(=O)",
    "L": "N[C@@H](CC(C)C)C(=O)",
    "I": "N[C@@H]([C@@H](C)CC)C(=O)",
    "S": "N[C@@H](CO)C(=O)",
    "T": "N[C@@H]([C@H](O)C)C(=O)",
    "C": "N[C@@H](CS)C(=O)",
    "M": "N[C@@H](CCSC)C(=O)",
    "F": "N[C@@H](Cc{a}ccccc{a})C(=O)",
    "Y": "N[C@@H](Cc{a}ccc(O)cc{a})C(=O)",
    "W": "N[C@@H](Cc{a}c[nH]c{b}ccccc{a}{b})C(=O)",
    "H": "N[C@@H](Cc{a}c[nH]cn{a})C(=O)",
    "D": "N[C@@H](CC(=O)O)C(=O)",
    "E": "N[C@@H](CCC(=O)O)C(=O)",
    "N": "N[C@@H](CC(N)=O)C(=O)",
    "Q": "N[C@@H](CCC(N)=O)C(=O)",
    "K": "N[C@@H](CCCCN)C(=O)",
    "R": "N[C@@H](CCCNC(N)=N)C(=O)",
    "P": "N{a}CCC[C@H]{a}C(=O)",
    "D-": "N[C@@H](CC(=O)[O-])C(=O)",
    "E-": "N[C@@H](CCC(=O)[O-])C(=O)",
    "K+": "N[C@@H](CCCC[NH3+])C(=O)",
    "R+": "N[C@@H](CCCNC(N)=[NH2+])C(=O)",
    "H+": "N[C@@H](Cc{a}c[nH]c[nH+]{a})C(=O)",
}
STANDARD = "GAVLISTCMFYWHDENQKRP"
CHARGED_FORM = {"D": "D-", "E": "E-", "K": "K+", "R": "R+", "H": "H+"}
ENDS = {  # (prefix, suffix) around the joined residues
    "capped": ("CC(=O)", "NC"),  # ACE ... NME
    "neutral": ("", "O"),  # H2N ... COOH
    "charged": ("", "[O-]"),  # H3N+ ... COO- (the N-terminal N is protonated when built)
}

# Sulfur and fluorine chemistry (QM9 has F but no S) and drug-like molecules larger than QM9's.
SMALL_MOLECULES = (
    # thiols, sulfides, disulfides
    "CS",
    "CCS",
    "SCCO",
    "CSC",
    "CCSCC",
    "CSSC",
    "CCSSCC",
    "C1CCSC1",
    "C1CSCCS1",
    "Sc1ccccc1",
    "CSc1ccccc1",
    # aromatic S heterocycles
    "c1ccsc1",
    "Cc1cccs1",
    "c1ccc2sccc2c1",
    "c1cscn1",
    "Cc1ncsc1",
    "c1ccc2scnc2c1",
    "Nc1nccs1",
    # oxidised sulfur
    "CS(C)=O",
    "CS(=O)(=O)C",
    "CS(=O)(=O)N",
    "NS(=O)(=O)c1ccccc1",
    "CS(=O)(=O)O",
    "CC(=O)SC",
    "CC(N)=S",
    "NC(N)=S",
    "CN=C=S",
    "O=C1CSC(=S)N1",
    "Cc1ccc(cc1)S(=O)(=O)N",
    "Cc1cc(NS(=O)(=O)c2ccc(N)cc2)no1",
    # fluorine
    "Fc1ccccc1",
    "FC(F)(F)c1ccccc1",
    "OCC(F)(F)F",
    "CC(=O)C(F)(F)F",
    "FC(F)F",
    "CC(F)F",
    "Fc1ccc(F)cc1",
    "Fc1ccncc1",
    "OC(=O)C(F)(F)F",
    "FC(F)(F)S",
    "Fc1ccc(cc1)S(C)(=O)=O",
    "CNCCC(Oc1ccc(cc1)C(F)(F)F)c1ccccc1",
    # larger H C N O molecules (drug-like, > 9 heavy atoms)
    "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
    "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "CN1CCC[C@H]1c1cccnc1",
    "COc1ccc2[nH]cc(CCNC(C)=O)c2c1",
    "CC(=O)Nc1ccc(O)cc1",
    "OC(=O)c1ccccc1O",
    "O=C(O)CCc1ccccc1",
    "CCOC(=O)c1ccc(N)cc1",
    "c1ccc2ncccc2c1",
    "OC1CCCCC1",
    "CC(C)(C)OC(=O)N",
    "NCCc1ccc(O)c(O)c1",
    "CC(=O)OCC[N+](C)(C)C",
    "OC(=O)CC(N)C(=O)O",
    "C1CC[NH2+]CC1",
    "CC(=O)[O-]",
    "C[NH3+]",
    "O=C([O-])c1ccccc1",
)


@dataclass(frozen=True)
class Molecule:
    """One molecule to sample: its SMILES, a label and how many conformers to embed."""

    smiles: str
    label: str
    conformers: int


def peptide_smiles(sequence: list[str], ends: str) -> str:
    """SMILES of a peptide from residue codes (keys of ``RESIDUES``) with ``ENDS[ends]`` termini."""
    prefix, suffix = ENDS[ends]
    pieces = []
    for position, code in enumerate(sequence):
        a, b = 2 * position + 1, 2 * position + 2
        pieces.append(RESIDUES[code].format(a=f"%{10 + a}", b=f"%{10 + b}"))
    body = "".join(pieces)
    if ends == "charged":  # protonate the N terminus (proline's is a secondary amine)
        body = ("[NH2+]" if sequence[0] == "P" else "[NH3+]") + body[1:]
    return prefix + body + suffix


def peptides(seed: int, dipeptides: int, tripeptides: int, free: int) -> list[Molecule]:
    """Capped single residues (all neutral and charged forms), capped di/tripeptides and
    free-terminus di/tripeptides, residues drawn at random (ionisable ones charged half the time)."""
    rng = np.random.default_rng(seed)
    out = [Molecule(peptide_smiles([code], "capped"), f"ACE-{code}-NME", 8) for code in RESIDUES]

    def draw(length: int) -> list[str]:
        codes = [STANDARD[i] for i in rng.integers(0, len(STANDARD), length)]
        return [CHARGED_FORM[c] if c in CHARGED_FORM and rng.random() < 0.5 else c for c in codes]

    for count, length in ((dipeptides, 2), (tripeptides, 3)):
        for _ in range(count):
            seq = draw(length)
            out.append(Molecule(peptide_smiles(seq, "capped"), "ACE-" + "".join(seq) + "-NME", 3))
    for i in range(free):
        seq = draw(2 + i % 2)
        ends = "charged" if i % 2 else "neutral"
        out.append(Molecule(peptide_smiles(seq, ends), f"{ends}:" + "".join(seq), 3))
    return out


def conformers(molecule: Molecule, seed: int) -> Iterator[tuple[Atoms, int]]:
    """MMFF-relaxed ETKDG conformers of one molecule with its total formal charge."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.MolFromSmiles(molecule.smiles)
    if mol is None:
        raise ValueError(f"RDKit cannot parse {molecule.label}: {molecule.smiles}")
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=molecule.conformers, params=params))
    if not ids:
        raise ValueError(f"RDKit could not embed {molecule.label}: {molecule.smiles}")
    AllChem.MMFFOptimizeMoleculeConfs(mol, maxIters=500)
    numbers = [atom.GetAtomicNum() for atom in mol.GetAtoms()]
    charge = Chem.GetFormalCharge(mol)
    for cid in ids:
        yield Atoms(numbers=numbers, positions=mol.GetConformer(cid).GetPositions()), charge


def displaced(atoms: Atoms, sigma: float, rng: np.random.Generator) -> Atoms:
    """A copy of ``atoms`` with every Cartesian component moved by N(0, sigma²) Å."""
    out = atoms.copy()
    if sigma > 0:
        out.positions = out.positions + rng.normal(0.0, sigma, out.positions.shape)
    return out


def sample_molecules(molecules: list[Molecule], seed: int) -> list[Atoms]:
    """Every conformer of every molecule at each displacement in ``SIGMAS``."""
    rng = np.random.default_rng(seed)
    frames = []
    for index, molecule in enumerate(molecules):
        for conformer, (atoms, charge) in enumerate(conformers(molecule, seed + index)):
            for sigma in SIGMAS:
                frame = displaced(atoms, sigma, rng)
                frame.info.update(molecule=molecule.label, smiles=molecule.smiles, charge=charge)
                frame.info.update(conformer=conformer, sigma=sigma)
                frames.append(frame)
    return frames


def qm9_test_frames(count: int, seed: int) -> list[Atoms]:
    """``count`` QM9 molecules absent from the shared xTB QM9 set, displaced by QM9_TEST_SIGMA Å."""
    with np.load(QM9_XTB) as npz:
        known = set(npz["gdb_index"].tolist())
    with np.load(QM9_FULL) as npz:  # read each array once (an NpzFile re-reads on every access)
        qm9 = {key: npz[key] for key in ("z", "pos", "ptr", "gdb_index")}
    candidates = [i for i, g in enumerate(qm9["gdb_index"].tolist()) if g not in known]
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(candidates, size=min(count, len(candidates)), replace=False).tolist())
    ptr, frames = qm9["ptr"], []
    for i in picks:
        atoms = Atoms(numbers=qm9["z"][ptr[i] : ptr[i + 1]], positions=qm9["pos"][ptr[i] : ptr[i + 1]])
        frame = displaced(atoms, QM9_TEST_SIGMA, rng)
        frame.info.update(molecule=f"qm9:{int(qm9['gdb_index'][i])}", charge=0, sigma=QM9_TEST_SIGMA)
        frames.append(frame)
    return frames


def shared_qm9_frames(max_force: float) -> list[Atoms]:
    """The shared xTB QM9 set (eV, eV/Å), without frames whose largest force component exceeds
    ``max_force`` eV/Å."""
    with np.load(QM9_XTB) as npz:  # read each array once (an NpzFile re-reads on every access)
        data = {key: npz[key] for key in ("z", "R", "F", "E", "ptr", "gdb_index", "sigma")}
    ptr, frames = data["ptr"], []
    for i in range(len(ptr) - 1):
        forces = data["F"][ptr[i] : ptr[i + 1]].astype(np.float64)
        if np.abs(forces).max() > max_force:
            continue
        atoms = Atoms(numbers=data["z"][ptr[i] : ptr[i + 1]], positions=data["R"][ptr[i] : ptr[i + 1]])
        atoms.calc = SinglePointCalculator(atoms, energy=float(data["E"][i]), forces=forces)
        atoms.info.update(molecule=f"qm9:{int(data['gdb_index'][i])}", sigma=float(data["sigma"][i]))
        frames.append(atoms)
    return frames


def md_frames(name: str, count: int) -> list[Atoms]:
    """``count`` evenly strided frames of one shared 500 K xTB MD set, in eV and eV/Å."""
    with np.load(XTB_MD / f"{name}_gfn2xtb_500K.npz") as npz:
        data = {key: npz[key] for key in ("z", "R", "E", "F", "e_unit")}
    if str(data["e_unit"]) != "kcal/mol":
        raise ValueError(f"{name}: expected energies in kcal/mol, found {data['e_unit']}")
    frames = []
    for i in np.linspace(0, len(data["R"]) - 1, count).round().astype(int):
        atoms = Atoms(numbers=data["z"], positions=data["R"][i])
        energy = float(np.ravel(data["E"])[i]) * KCAL_PER_MOL
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=data["F"][i] * KCAL_PER_MOL)
        atoms.info.update(molecule=name)
        frames.append(atoms)
    return frames


def write_frames(path: Path, frames: list[Atoms], level_of_theory: str | None = None) -> None:
    """Write ``frames`` to an extended-XYZ file atomically."""
    if level_of_theory:
        for atoms in frames:
            atoms.info["level_of_theory"] = level_of_theory
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w", suffix=".extxyz") as handle:
        write(handle, frames, format="extxyz")


def fingerprint(frames: list[Atoms]) -> str:
    """A short hash of the numbers and positions of ``frames`` (to tell reruns apart)."""
    digest = hashlib.sha256()
    for atoms in frames:
        digest.update(atoms.numbers.tobytes())
        digest.update(np.round(atoms.positions, 6).tobytes())
    return digest.hexdigest()[:16]


def stage_sample(out: Path, args: argparse.Namespace) -> None:
    sets = {
        "peptides": peptides(args.seed, args.dipeptides, args.tripeptides, args.free_peptides),
        "small_molecules": [Molecule(s, s, 5) for s in SMALL_MOLECULES],
    }
    for name, molecules in sets.items():
        path = out / "sampled" / f"{name}.extxyz"
        if path.exists():
            print(f"sample: {path} exists, kept")
            continue
        frames = sample_molecules(molecules, args.seed)
        write_frames(path, frames)
        print(f"sample: {len(frames)} geometries of {len(molecules)} molecules -> {path} ({fingerprint(frames)})")
    path = out / "sampled" / "qm9_test.extxyz"
    if not path.exists():
        frames = qm9_test_frames(args.qm9_test, args.seed)
        write_frames(path, frames)
        print(f"sample: {len(frames)} held-out QM9 geometries -> {path}")


def stage_label(out: Path, args: argparse.Namespace) -> None:
    from visnet.labelling import label

    for name in ("small_molecules", "peptides", "qm9_test"):
        source, target = out / "sampled" / f"{name}.extxyz", out / "labelled" / f"{name}.extxyz"
        if target.exists():
            print(f"label: {target} exists, kept")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        report = label(source, target, method="gfn2-xtb", workers=args.workers)
        print(f"label: {report.labelled} labelled, {report.skipped} resumed, {len(report.failed)} failed -> {target}")


def stage_assemble(out: Path, args: argparse.Namespace) -> None:
    train, test = out / "train.extxyz", out / "test_qm9.extxyz"
    if not train.exists():
        generated = [
            *read(out / "labelled" / "small_molecules.extxyz", ":"),
            *read(out / "labelled" / "peptides.extxyz", ":"),
        ]
        level = str(generated[0].info.get("level_of_theory", "GFN2-xTB (tblite)"))
        frames = shared_qm9_frames(args.max_force)
        for name in TEN_MOLECULES:
            frames.extend(md_frames(name, args.frames_per_molecule))
        frames.extend(generated)
        write_frames(train, frames, level_of_theory=level)
        counts = {"qm9": len(frames) - len(generated) - 10 * args.frames_per_molecule, "generated": len(generated)}
        print(f"assemble: {len(frames)} frames ({json.dumps(counts)}) -> {train}")
    if not test.exists():
        frames = read(out / "labelled" / "qm9_test.extxyz", ":")
        write_frames(test, frames)
        print(f"assemble: {len(frames)} held-out QM9 frames -> {test}")


STAGES = {"sample": stage_sample, "label": stage_label, "assemble": stage_assemble}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "organic")
    parser.add_argument("--stage", choices=[*STAGES, "all"], default="all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dipeptides", type=int, default=200)
    parser.add_argument("--tripeptides", type=int, default=100)
    parser.add_argument("--free-peptides", type=int, default=100)
    parser.add_argument("--qm9-test", type=int, default=400, help="held-out QM9 molecules")
    parser.add_argument(
        "--frames-per-molecule", type=int, default=FRAMES_PER_MOLECULE, help="frames of each shared xTB MD set"
    )
    parser.add_argument("--max-force", type=float, default=20.0, help="eV/Å; stronger shared QM9 frames left out")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    for name, stage in STAGES.items():
        if args.stage in (name, "all"):
            stage(args.out, args)


if __name__ == "__main__":
    main()
