"""read_protein on PDB files built here (RDKit heavy atoms): hydrogens added, residues kept, and
each kind of bad input refused in one line naming residue and chain; `visnet md protein.pdb`."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from visnet.proteins.reading import AlternateLocationWarning, read_protein

Chem = pytest.importorskip("rdkit.Chem")


@pytest.fixture(scope="module")
def pdb_lines() -> list[str]:
    """Heavy-atom PDB lines of the peptide AGS (RDKit, 3D)."""
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSequence("AGS"))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    block = Chem.MolToPDBBlock(Chem.RemoveHs(mol))
    return [ln for ln in block.splitlines() if ln.startswith("ATOM")]


def _write(tmp_path, lines: list[str], name: str = "p.pdb"):
    path = tmp_path / name
    path.write_text("\n".join([*lines, "END"]) + "\n")
    return path


def test_hydrogens_added_residues_kept(tmp_path, pdb_lines) -> None:
    atoms = read_protein(_write(tmp_path, pdb_lines))
    assert (atoms.numbers == 1).sum() > 0
    assert list(dict.fromkeys(atoms.arrays["residuenames"].tolist())) == ["ALA", "GLY", "SER"]
    assert set(atoms.arrays["residuenumbers"].tolist()) == {1, 2, 3}
    assert set(atoms.arrays["chainids"].tolist()) == {"A"}
    # pH 7: NH3+ and COO- termini; Amber charges sum to the net charge 0
    assert atoms.arrays["mm_charges"].sum() == pytest.approx(0.0, abs=1e-6)
    ala_h = atoms.arrays["atomtypes"][(atoms.arrays["residuenames"] == "ALA") & (atoms.numbers == 1)]
    assert len(ala_h) == 3 + 1 + 3  # NH3+ (OpenMM names H, H2, H3), HA, HB1-3
    assert {"HA", "HB1", "HB2", "HB3"} <= set(ala_h.tolist())


def _line(pdb_lines: list[str], residue: str, atom: str) -> int:
    return next(k for k, ln in enumerate(pdb_lines) if ln[17:20] == residue and ln[12:16].strip() == atom)


def test_missing_heavy_atom(tmp_path, pdb_lines) -> None:
    lines = list(pdb_lines)
    del lines[_line(lines, "SER", "OG")]
    with pytest.raises(ValueError, match=r"chain A SER 3: missing heavy atom\(s\) OG; fix=True builds them"):
        read_protein(_write(tmp_path, lines))
    atoms = read_protein(_write(tmp_path, lines), fix=True)
    assert "OG" in atoms.arrays["atomtypes"].tolist()


def test_water_refused_or_removed(tmp_path, pdb_lines) -> None:
    water = "HETATM   99  O   HOH B 101      30.000  30.000  30.000  1.00  0.00           O"
    path = _write(tmp_path, [*pdb_lines, "TER", water])
    with pytest.raises(ValueError, match=r"chain B HOH 101: water, ion or ligand"):
        read_protein(path)
    atoms = read_protein(path, heterogens="remove")
    assert "HOH" not in atoms.arrays["residuenames"].tolist()


def test_chain_break(tmp_path, pdb_lines) -> None:
    lines = []
    for ln in pdb_lines:
        if ln[17:20] == "SER":
            x = float(ln[30:38]) + 6.0
            ln = f"{ln[:30]}{x:8.3f}{ln[38:]}"
        lines.append(ln)
    with pytest.raises(ValueError, match=r"chain break in chain A between GLY 2 and SER 3"):
        read_protein(_write(tmp_path, lines))


def test_alternate_locations_warn_and_keep_first(tmp_path, pdb_lines) -> None:
    lines = list(pdb_lines)
    k = _line(lines, "SER", "OG")
    first = lines[k][:16] + "A" + lines[k][17:]
    second = lines[k][:16] + "B" + lines[k][17:30] + f"{float(lines[k][30:38]) + 0.5:8.3f}" + lines[k][38:]
    lines[k : k + 1] = [first, second]
    with pytest.warns(AlternateLocationWarning, match="1 atom record"):
        atoms = read_protein(_write(tmp_path, lines))
    og = atoms.positions[atoms.arrays["atomtypes"] == "OG"]
    assert len(og) == 1
    np.testing.assert_allclose(og[0, 0], float(first[30:38]), atol=1e-3)


def test_nonstandard_residue(tmp_path, pdb_lines) -> None:
    lines = [ln.replace("SER", "SEP") if ln[17:20] == "SER" else ln for ln in pdb_lines]
    with pytest.raises(ValueError, match=r"chain A SEP 3: non-standard residue \(a modified SER\)"):
        read_protein(_write(tmp_path, lines))


def test_unreadable_and_missing_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="protein file not found"):
        read_protein(tmp_path / "nope.pdb")
    bad = tmp_path / "bad.cif"
    bad.write_text("data_x\nnot a cif at all\n")
    with pytest.raises(ValueError, match="cannot read protein file"):
        read_protein(bad)


def test_no_hydrogens_kept_then_fragmentation_refuses(tmp_path, pdb_lines) -> None:
    from visnet import ViSNetCalculator

    atoms = read_protein(_write(tmp_path, pdb_lines), add_hydrogens=False)
    atoms.calc = ViSNetCalculator(model="default", fragmentation="ai2bmd", nonbonded=None)
    with pytest.raises(ValueError, match=r"chain A ALA 1 has no hydrogens"):
        atoms.get_potential_energy()


def test_visnet_md_fragmented_protein(tmp_path, pdb_lines) -> None:
    from visnet.cli.main import main

    path = _write(tmp_path, pdb_lines)
    out = tmp_path / "md"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        code = main(
            [
                "md",
                str(path),
                "--fragmentation",
                "ai2bmd",
                "--nonbonded-cutoff",
                "9",
                "--steps",
                "4",
                "--timestep",
                "0.25",
                "--output-dir",
                str(out),
            ]
            + ["--no-plots", "--no-progress", "--log-interval", "2", "--traj-interval", "2"]
        )
    assert code in (0, None)
    assert any(out.iterdir())


@pytest.mark.parametrize("value", ["0", "-2", "nan", "twelve"])
def test_visnet_md_bad_nonbonded_cutoff(tmp_path, pdb_lines, capsys, value) -> None:
    from visnet.cli.main import main

    with pytest.raises(SystemExit) as stop:
        main(["md", str(_write(tmp_path, pdb_lines)), "--fragmentation", "ai2bmd", "--nonbonded-cutoff", value])
    assert stop.value.code == 2
    assert "--nonbonded-cutoff: a positive number of Å or 'none'" in capsys.readouterr().err
