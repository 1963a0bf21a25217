"""Fragmented (AI2BMD) evaluation through the calculator, float64: forces are -dE/dR of the
assembled energy (caps included), invariances, far-apart chains add up, per-residue energies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.calculators.fd import calculate_numerical_forces
from helpers import small_model
from scipy.spatial.transform import Rotation

from visnet import ViSNetCalculator
from visnet.proteins.building import peptide_from_sequence

pytest.importorskip("rdkit")


@pytest.fixture(scope="module")
def peptide():
    """ACE-ALA-PRO-SER-NME (47 atoms) with Amber parameters."""
    return peptide_from_sequence("APS", seed=2)


def _calc(nonbonded="amber14", cutoff=12.0) -> ViSNetCalculator:
    return ViSNetCalculator(
        model=small_model(seed=3), fragmentation="ai2bmd", nonbonded=nonbonded, nonbonded_cutoff=cutoff, dtype="float64"
    )


# cutoff 6 Å: many MM pairs sit near the cutoff of the 47-atom peptide (its extent is ~12 Å)
@pytest.mark.parametrize(
    ("nonbonded", "cutoff"), [("amber14", 12.0), ("amber14", 6.0), ("amber14", None), (None, 12.0)]
)
def test_forces_are_minus_gradient_of_assembled_energy(peptide, nonbonded, cutoff) -> None:
    atoms = peptide.copy()
    atoms.calc = _calc(nonbonded, cutoff)
    forces = atoms.get_forces()
    # every atom that anchors or points a cap, plus side-chain and backbone atoms elsewhere
    units = atoms.calc.protein_units(atoms).units
    picked = sorted(
        set(units.source[units.is_cap].tolist()) | set(units.partner[units.is_cap].tolist()) | {0, 20, len(atoms) - 1}
    )
    numeric = calculate_numerical_forces(atoms, eps=1e-4, iatoms=picked)
    # float64 central differences with h = 1e-4 Å: truncation ~h² |E'''| ~ 1e-7 eV/Å
    np.testing.assert_allclose(forces[picked], numeric, atol=1e-5)
    assert np.abs(forces).max() > 0.05  # the check is not trivially passed by zero forces


def test_translation_rotation_invariance(peptide) -> None:
    calc = _calc()
    atoms = peptide.copy()
    atoms.calc = calc
    e0, f0 = atoms.get_potential_energy(), atoms.get_forces()
    moved = peptide.copy()
    rot = Rotation.from_euler("xyz", [0.3, -1.1, 2.0])
    moved.positions = rot.apply(peptide.positions) + [4.0, -7.0, 1.5]
    moved.calc = calc
    assert moved.get_potential_energy() == pytest.approx(e0, abs=1e-9)
    np.testing.assert_allclose(moved.get_forces(), rot.apply(f0), atol=1e-9)


def test_far_apart_chains_add_up(peptide) -> None:
    other = peptide_from_sequence("GV", seed=4)
    other.arrays["chainids"][:] = "B"
    other.positions += [500.0, 0.0, 0.0]
    both = peptide + other
    energies = []
    for atoms in (peptide.copy(), other.copy(), both):
        atoms.calc = _calc(None)
        energies.append(atoms.get_potential_energy())
    assert energies[2] == pytest.approx(energies[0] + energies[1], abs=1e-9)
    # with Amber's Coulomb + LJ: neutral chains 500 Å apart feel ~dipole-dipole, below 1e-6 eV
    totals = []
    for atoms in (peptide.copy(), other.copy(), both.copy()):
        atoms.calc = _calc()
        totals.append(atoms.get_potential_energy())
    assert totals[2] == pytest.approx(totals[0] + totals[1], abs=1e-6)


def test_cutoff_pairs_are_the_close_pairs_sharing_no_unit(peptide) -> None:
    atoms = peptide.copy()
    protein = _calc(cutoff=6.0).protein_units(atoms)
    pos = torch.as_tensor(atoms.positions)
    pairs = {tuple(p) for p in protein.mm_pairs(pos).tolist()}
    shared = {tuple(p) for p in protein.excluded.tolist()}
    n = len(atoms)
    close = {(i, j) for i in range(n) for j in range(i + 1, n) if np.linalg.norm(pos[i] - pos[j]) < 6.0}
    assert pairs == close - shared
    assert len(pairs) > 100 and len(close & shared) > 100


def test_cutoff_and_exact_mm_terms_agree_closely(peptide) -> None:
    """At 12 Å the shifted-force term differs from the exact sum by a near-constant energy shift
    (-2 k q_i q_j / r_c per pair at r << r_c), a constant force shift k q_i q_j / r_c^2 per pair and
    the few pairs beyond 12 Å: measured here 3 % of a conformer energy change and 13 % of the
    largest MM force."""
    atoms = peptide.copy()
    moved = atoms.copy()
    moved.rattle(0.05, seed=1)
    terms = {}
    for cutoff in (None, 12.0):
        protein = _calc(cutoff=cutoff).protein_units(atoms)
        terms[cutoff] = [protein.nonbonded_terms(torch.as_tensor(a.positions)) for a in (atoms, moved)]
    change = {c: float(t[1][0] - t[0][0]) for c, t in terms.items()}
    assert change[12.0] == pytest.approx(change[None], rel=0.05)
    exact, cut = terms[None][0][1], terms[12.0][0][1]
    assert float((cut - exact).norm(dim=1).max()) < 0.2 * float(exact.norm(dim=1).max())


def test_per_residue_and_per_atom_energies_sum_to_energy(peptide) -> None:
    atoms = peptide.copy()
    atoms.calc = _calc()
    energy = atoms.get_potential_energy()
    residue = atoms.calc.get_property("residue_energies")
    assert residue.shape == (5,)  # ACE ALA PRO SER NME
    assert residue.sum() == pytest.approx(energy, abs=1e-9)
    assert atoms.get_potential_energies().sum() == pytest.approx(energy, abs=1e-9)


def test_single_residue_fragment_equals_whole_molecule() -> None:
    atoms = peptide_from_sequence("A", seed=0)  # ACE-ALA-NME: one unit, no caps, no MM pairs
    atoms.calc = _calc(None)
    fragmented = atoms.get_potential_energy()
    atoms.calc = ViSNetCalculator(model=small_model(seed=3), dtype="float64")
    assert atoms.get_potential_energy() == pytest.approx(fragmented, abs=1e-9)


def test_bad_input_named(peptide) -> None:
    with pytest.raises(ValueError, match="fragmentation must be None or one of"):
        ViSNetCalculator(model=small_model(), fragmentation="fmo")
    for bad in (0.0, -3.0, float("nan"), float("inf"), "12 Å"):
        with pytest.raises(ValueError, match="nonbonded_cutoff must be a positive number of Å or None"):
            ViSNetCalculator(model=small_model(), fragmentation="ai2bmd", nonbonded_cutoff=bad)
    atoms = peptide.copy()
    atoms.numbers[atoms.arrays["atomtypes"] == "OG"] = 16  # serine's O -> S (the model has max_z 10)
    atoms.calc = ViSNetCalculator(model="default", fragmentation="ai2bmd")
    with pytest.raises(ValueError, match=r"chain A SER 3: element S \(atom OG\) is not among the model's elements"):
        atoms.get_potential_energy()
    bare = peptide.copy()
    for name in ("mm_charges", "mm_sigmas", "mm_epsilons"):
        del bare.arrays[name]
    bare.calc = _calc()
    with pytest.raises(ValueError, match="nonbonded='amber14' needs Amber parameters"):
        bare.get_potential_energy()
    periodic = peptide.copy()
    periodic.cell, periodic.pbc = [30, 30, 30], True
    periodic.calc = _calc()
    with pytest.raises(ValueError, match="protein in vacuum"):
        periodic.get_potential_energy()
