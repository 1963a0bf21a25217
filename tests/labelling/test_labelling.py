"""``visnet.labelling.label``: labels equal a direct calculation, forces are -dE/dR, periodic
cells get stress, charges reach the calculator, workers change nothing, failures are listed."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.io import read, write

from visnet.labelling import LabelReport, label, make_calculator

pytest.importorskip("tblite")
from tblite.ase import TBLite  # noqa: E402

# Energies are written with Python's repr (exact) and forces with 8 decimals by extended XYZ, so
# a label read back equals a direct tblite call of the same positions to rounding: 1e-8 eV for
# energies and stress (eV/Å³), 1e-7 eV/Å for forces (the last written digit, with margin).
ENERGY_TOL, FORCE_TOL = 1e-8, 1e-7


def _molecules() -> list[Atoms]:
    frames = [molecule(name) for name in ("H2O", "CH4", "CH3CH2OH")]
    for k, atoms in enumerate(frames):
        atoms.rattle(0.03, seed=k)
    return frames


def _direct(atoms: Atoms, **parameters) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0, **parameters)
    atoms.get_forces()
    return atoms


def test_labels_equal_a_direct_tblite_calculation(tmp_path: Path) -> None:
    write(tmp_path / "in.extxyz", [*_molecules(), bulk("Si", cubic=True)])
    frames = read(tmp_path / "in.extxyz", ":")  # the positions as written (8 decimals)
    report = label(tmp_path / "in.extxyz", tmp_path / "out.extxyz", progress=False)
    assert report == LabelReport(4, 0, [], tmp_path / "out.extxyz", None)
    out = read(tmp_path / "out.extxyz", ":")
    assert [atoms.info["source_index"] for atoms in out] == [0, 1, 2, 3]
    for atoms, frame in zip(out, frames):
        reference = _direct(frame)
        assert atoms.info["level_of_theory"].startswith("GFN2-xTB (tblite ")
        assert atoms.get_chemical_symbols() == frame.get_chemical_symbols()
        assert abs(atoms.get_potential_energy() - reference.get_potential_energy()) < ENERGY_TOL
        np.testing.assert_allclose(atoms.get_forces(), reference.get_forces(), rtol=0, atol=FORCE_TOL)
    assert "stress" not in out[0].calc.results  # a molecule has no stress
    np.testing.assert_allclose(out[3].get_stress(), _direct(frames[3]).get_stress(), rtol=0, atol=ENERGY_TOL)
    assert not (tmp_path / "out.extxyz.partial.jsonl").exists()


def test_forces_are_minus_the_energy_gradient(tmp_path: Path) -> None:
    """Central differences of labelled energies, h = 1e-3 Å: truncation error h²/6·|d³E/dx³| is
    ~3e-5 eV/Å on water (measured), far below the 1e-4 eV/Å allowed."""
    water = _molecules()[0]
    h, coordinates = 1e-3, [(0, 2), (1, 0), (2, 1)]
    displaced = [water.copy()]
    for atom, axis in coordinates:
        for sign in (1, -1):
            atoms = water.copy()
            atoms.positions[atom, axis] += sign * h
            displaced.append(atoms)
    label(displaced, tmp_path / "fd.extxyz", progress=False)
    out = read(tmp_path / "fd.extxyz", ":")
    forces = out[0].get_forces()
    for k, (atom, axis) in enumerate(coordinates):
        plus, minus = out[1 + 2 * k].get_potential_energy(), out[2 + 2 * k].get_potential_energy()
        assert abs(-(plus - minus) / (2 * h) - forces[atom, axis]) < 1e-4


def test_charge_and_multiplicity_reach_tblite(tmp_path: Path) -> None:
    hydroxide = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]])
    methyl = molecule("CH3")
    triplet = molecule("O2")
    triplet.info["multiplicity"] = 3
    hydroxide.info["charge"] = -1
    label([hydroxide, methyl, triplet], tmp_path / "out.extxyz", progress=False)
    out = read(tmp_path / "out.extxyz", ":")
    expected = [
        _direct(hydroxide, charge=-1, multiplicity=1),
        _direct(methyl, charge=0, multiplicity=2),
        _direct(triplet, charge=0, multiplicity=3),
    ]
    for atoms, reference in zip(out, expected):
        assert abs(atoms.get_potential_energy() - reference.get_potential_energy()) < ENERGY_TOL
    assert [(a.info["charge"], a.info["multiplicity"]) for a in out] == [(-1, 1), (0, 2), (0, 3)]
    # the charge differs from the neutral molecule's by far more than the tolerance: it was applied
    assert abs(out[0].get_potential_energy() - _direct(hydroxide).get_potential_energy()) > 1.0


def test_charge_option_applies_to_every_frame(tmp_path: Path) -> None:
    ammonium = molecule("NH3")
    ammonium.append("H")
    ammonium.positions[-1] = [0, 0, 1.05]
    label([ammonium], tmp_path / "out.extxyz", charge=1, progress=False)
    out = read(tmp_path / "out.extxyz")
    reference = _direct(ammonium, charge=1, multiplicity=1)
    assert abs(out.get_potential_energy() - reference.get_potential_energy()) < ENERGY_TOL
    assert out.info["charge"] == 1


def test_two_workers_give_the_output_of_one(tmp_path: Path) -> None:
    frames = _molecules() * 2
    for k, atoms in enumerate(frames):
        atoms.rattle(0.01, seed=10 + k)
    serial = label(frames, tmp_path / "serial.extxyz", progress=False)
    parallel = label(frames, tmp_path / "parallel.extxyz", workers=2, progress=False)
    assert serial.labelled == parallel.labelled == len(frames)
    one, two = read(tmp_path / "serial.extxyz", ":"), read(tmp_path / "parallel.extxyz", ":")
    assert [a.info["source_index"] for a in two] == list(range(len(frames)))
    for a, b in zip(one, two):
        assert abs(a.get_potential_energy() - b.get_potential_energy()) < ENERGY_TOL
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), rtol=0, atol=FORCE_TOL)


def test_failed_frames_land_in_the_sidecar_and_the_report(tmp_path: Path) -> None:
    frames = _molecules()
    frames.insert(1, Atoms("H2", positions=[[0, 0, 0], [0, 0, 0]]))  # tblite refuses coincident atoms
    report = label(frames, tmp_path / "out.extxyz", progress=False)
    assert report.labelled == 3 and [i for i, _ in report.failed] == [1]
    assert "Too close" in report.failed[0][1]
    assert report.failures_path == tmp_path / "out.extxyz.failures.csv"
    with open(report.failures_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [{"index": "1", "formula": "H2", "reason": report.failed[0][1]}]
    assert [a.info["source_index"] for a in read(tmp_path / "out.extxyz", ":")] == [0, 2, 3]
    assert "1 failed" in report.summary() and str(report.failures_path) in report.summary()


def test_an_unconverged_scf_is_a_failure_with_its_reason(tmp_path: Path) -> None:
    report = label(
        _molecules()[:1], tmp_path / "out.extxyz", calculator="label_calculators:unconverged_xtb", progress=False
    )
    assert report.labelled == 0 and report.failed == [(0, "CalculationFailed: SCF not converged in 2 cycles")]


def test_a_user_calculator_by_module_and_factory(tmp_path: Path) -> None:
    copper = bulk("Cu", cubic=True) * (2, 1, 1)
    copper.rattle(0.05, seed=3)
    report = label([copper], tmp_path / "cu.extxyz", calculator="ase.calculators.emt:EMT", progress=False)
    out = read(tmp_path / "cu.extxyz")
    reference = copper.copy()
    reference.calc = EMT()
    assert report.labelled == 1 and out.info["level_of_theory"] == "ase.calculators.emt:EMT"
    assert abs(out.get_potential_energy() - reference.get_potential_energy()) < ENERGY_TOL
    np.testing.assert_allclose(out.get_forces(), reference.get_forces(), rtol=0, atol=FORCE_TOL)
    np.testing.assert_allclose(out.get_stress(), reference.get_stress(), rtol=0, atol=ENERGY_TOL)


def test_a_user_calculator_as_a_callable(tmp_path: Path) -> None:
    factory = make_calculator("gfn2-xtb", EMT)
    assert factory is EMT
    label([bulk("Cu")], tmp_path / "cu.extxyz", calculator=EMT, progress=False)
    assert read(tmp_path / "cu.extxyz").info["level_of_theory"] == "ase.calculators.emt:EMT"


def test_old_labels_of_the_input_are_replaced(tmp_path: Path) -> None:
    water = _molecules()[0]
    water.info["energy"] = 123.0
    water.arrays["forces"] = np.ones((3, 3))
    write(tmp_path / "in.extxyz", [water])
    water = read(tmp_path / "in.extxyz")
    label(tmp_path / "in.extxyz", tmp_path / "out.extxyz", progress=False)
    out = read(tmp_path / "out.extxyz")
    assert abs(out.get_potential_energy() - _direct(water).get_potential_energy()) < ENERGY_TOL
    assert "energy" not in out.info and "forces" not in out.arrays


def test_the_command_labels_and_prints_one_summary_line(tmp_path: Path, capsys) -> None:
    from visnet.cli import main as visnet_main

    write(tmp_path / "in.xyz", _molecules())
    code = visnet_main(["label", str(tmp_path / "in.xyz"), str(tmp_path / "out.extxyz"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and out == f"labelled 3 frames -> {tmp_path / 'out.extxyz'}\n"
    assert len(read(tmp_path / "out.extxyz", ":")) == 3
