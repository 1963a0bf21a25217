"""Per-atom values: exact energy decomposition, its invariances and locality, integrated gradients'
completeness and symmetry, committee force uncertainty."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from scipy.spatial.transform import Rotation

import visnet
from visnet.explain import explain
from visnet.explain.attribution import integrated_gradients
from visnet.inference.resolve import resolve_model

# float64 sums of ~20 terms of size ~1e3 eV: rounding ~1e-12 relative; 1e-9 eV leaves room.
EXACT = 1e-9


@pytest.fixture(scope="module")
def ethanol_atoms() -> Atoms:
    return molecule("CH3CH2OH")


def test_per_atom_energies_sum_to_the_total(ethanol_atoms: Atoms) -> None:
    e = explain(ethanol_atoms, attention=False)
    assert e.method == "decomposition" and e.unit == "eV"
    assert e.values.shape == (1, len(ethanol_atoms))
    assert e.values[0].sum() == pytest.approx(e.totals[0], abs=EXACT)
    direct = visnet.predict(ethanol_atoms, properties=["energy"])[0]["energy"]
    assert e.totals[0] == pytest.approx(direct, abs=1e-8)


def test_per_atom_energies_are_rotation_and_translation_invariant(ethanol_atoms: Atoms) -> None:
    moved = ethanol_atoms.copy()
    moved.positions = Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).apply(moved.positions) + [7.0, -3.0, 11.0]
    a, b = explain(ethanol_atoms, attention=False), explain(moved, attention=False)
    np.testing.assert_allclose(b.values, a.values, atol=1e-8)


def test_a_far_away_atom_leaves_the_other_contributions_unchanged(ethanol_atoms: Atoms) -> None:
    far = ethanol_atoms + Atoms("H", positions=[[40.0, 0.0, 0.0]])  # 8 cutoffs away
    a, b = explain(ethanol_atoms, attention=False), explain(far, attention=False)
    np.testing.assert_allclose(b.values[0, :-1], a.values[0], atol=EXACT)
    np.testing.assert_allclose(b.relative[0, :-1], a.relative[0], atol=EXACT)
    assert b.relative[0, -1] == pytest.approx(0.0, abs=EXACT)  # a lone atom is its free-atom value


def test_readout_terms_of_an_extensive_property_sum_to_it(ethanol_atoms: Atoms) -> None:
    e = explain(ethanol_atoms, model="qm9", property="U0", attention=False)
    assert e.method == "readout"
    assert e.values[0].sum() == pytest.approx(e.totals[0], abs=EXACT)


@pytest.mark.parametrize("prop", ["gap", "mu"])
def test_integrated_gradients_are_complete(ethanol_atoms: Atoms, prop: str) -> None:
    """Σ_i A_i = F(x) − F(baseline); the bundled models' max_min vector norm makes the integrand
    piecewise smooth, so 256 Gauss–Legendre points get within 1 % (measured: under 0.2 %)."""
    e = explain(ethanol_atoms, model="qm9", property=prop, steps=256, attention=False)
    assert e.method == "integrated_gradients"
    direct = visnet.predict(ethanol_atoms, model="qm9", properties=[prop])[0][prop]
    assert e.totals[0] == pytest.approx(direct, abs=1e-8)  # the hook leaves the input itself untouched
    spread = abs(e.totals[0] - e.baselines[0])
    assert spread > 1e-3
    assert abs(e.values[0].sum() - (e.totals[0] - e.baselines[0])) < 0.01 * spread


def test_integrated_gradients_converge_with_steps_on_a_smooth_model(ethanol_atoms: Atoms) -> None:
    model = resolve_model("default", device="cpu", dtype="float64").model
    z = torch.as_tensor(ethanol_atoms.numbers)
    pos = torch.as_tensor(ethanol_atoms.positions)
    coarse, fine = (integrated_gradients(model, z, pos, "energy", steps) for steps in (8, 128))
    assert fine.baseline == pytest.approx(coarse.baseline, abs=1e-10)
    assert abs(fine.residual) < 1e-5 * abs(fine.total - fine.baseline)
    assert abs(fine.residual) < abs(coarse.residual)


def test_symmetric_atoms_get_equal_attributions() -> None:
    """Methane in Td symmetry: the four hydrogens are equivalent, so are their attributions."""
    e = explain(molecule("CH4"), model="qm9", property="gap", steps=32, attention=False)
    h = e.values[0, 1:]
    assert np.ptp(h) < 1e-8 * max(1.0, np.abs(h).max())
    assert np.abs(e.values[0]).max() > 1e-4  # not trivially zero


def test_committee_gives_per_atom_force_uncertainty(ethanol_atoms: Atoms) -> None:
    base = visnet.load_model("default", dtype="float64")
    other = visnet.load_model("default", dtype="float64")
    with torch.no_grad():
        for p in other.output_model.parameters():
            p.mul_(1.05)
    e = explain(ethanol_atoms, model=[base, other], attention=False)
    forces = [visnet.ViSNetCalculator(model=m).get_forces(ethanol_atoms) for m in (base, other)]
    expected = np.sqrt((np.stack(forces).std(axis=0) ** 2).sum(axis=1))
    np.testing.assert_allclose(e.force_uncertainty[0], expected, atol=1e-8)
    assert expected.max() > 1e-4
    same = explain(ethanol_atoms, model=[base, base], attention=False)
    np.testing.assert_allclose(same.force_uncertainty, 0.0, atol=1e-12)
