"""scripts/run_mlmm.py, smoke: ACE-ALA-SER-NME built from its sequence, solvated in a small TIP3P box,
fragmented ViSNet + Amber14 through openmm-ml, a few steps; PDB, DCD, CSV and checkpoint written,
and a second call resumes from the checkpoint."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import REPO

pytest.importorskip("openmmml")
pytest.importorskip("pdbfixer")
pytest.importorskip("rdkit")


def _script():
    spec = importlib.util.spec_from_file_location("run_mlmm", REPO / "scripts" / "run_mlmm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_solvated_peptide_runs_writes_and_resumes(tmp_path, capsys) -> None:
    from openmm import app

    script = _script()
    common = ["--sequence", "AS", "--fragmentation", "ai2bmd", "--padding", "0.6", "--cutoff", "0.6"]
    common += ["--equilibration", "2", "--minimise-iterations", "20", "--report-interval", "2"]
    common += ["--output-dir", str(tmp_path)]
    script.main([*common, "--steps", "4"])
    first = capsys.readouterr().out
    assert "4 steps (0.004 ps)" in first and "steps/s" in first
    for suffix in ("pdb", "dcd", "csv", "chk"):
        assert (tmp_path / f"AS.{suffix}").stat().st_size > 0
    solvated = app.PDBFile(str(tmp_path / "AS.pdb"))
    assert {r.name for r in solvated.topology.residues()} >= {"ACE", "ALA", "SER", "NME", "HOH"}
    script.main([*common, "--steps", "8", "--resume"])
    assert "resumed from" in capsys.readouterr().out
    rows = (tmp_path / "AS.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [2, 4, 6, 8]


def test_bad_arguments_refused(capsys) -> None:
    script = _script()
    for argv in ([], ["x.pdb", "--sequence", "AS"], ["--sequence", "AS", "--steps", "0"]):
        with pytest.raises(SystemExit) as stop:
            script.parse(argv)
        assert stop.value.code == 2
    assert "--steps must be at least 1" in capsys.readouterr().err
