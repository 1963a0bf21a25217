"""AI2BMD units of a capped tripeptide checked by hand, caps on their cut bonds, topology errors,
and the non-bonded pair sum against a plain double loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visnet.proteins.building import peptide_from_sequence
from visnet.proteins.nonbonded import COULOMB_EV_A, nonbonded
from visnet.proteins.residues import X_H_BOND_LENGTH
from visnet.proteins.topology import ProteinTopology
from visnet.proteins.units import ACE_NME, DIPEPTIDE, fragment

pytest.importorskip("rdkit")


@pytest.fixture(scope="module")
def tripeptide():
    """ACE-ALA-GLY-SER-NME (residue numbers 0..4), all hydrogens."""
    return peptide_from_sequence("AGS", seed=1)


def _heavy(atoms, indices) -> set[tuple[str, str]]:
    return {
        (str(atoms.arrays["residuenames"][i]), str(atoms.arrays["atomtypes"][i]))
        for i in indices
        if atoms.numbers[i] > 1
    }


def _names(atoms, residue: str, names: str) -> set[tuple[str, str]]:
    return {(residue, n) for n in names.split()}


def test_tripeptide_units_by_hand(tripeptide) -> None:
    atoms, units = tripeptide, fragment(tripeptide)
    assert units.kind.tolist() == [DIPEPTIDE] * 3 + [ACE_NME] * 2
    assert units.sign.tolist() == [1, 1, 1, -1, -1]
    ace, ala, gly, ser, nme = (
        _names(atoms, *x)
        for x in [
            ("ACE", "C O CH3"),
            ("ALA", "N CA CB C O"),
            ("GLY", "N CA C O"),
            ("SER", "N CA CB OG C O"),
            ("NME", "N C"),
        ]
    )
    expected = [
        ace | ala | {("GLY", "N"), ("GLY", "CA")},  # ACE-ALA-NME: all of ACE (no cap there)
        {("ALA", "CA"), ("ALA", "C"), ("ALA", "O")} | gly | {("SER", "N"), ("SER", "CA")},
        {("GLY", "CA"), ("GLY", "C"), ("GLY", "O")} | ser | nme,
        {("ALA", "CA"), ("ALA", "C"), ("ALA", "O"), ("GLY", "N"), ("GLY", "CA")},
        {("GLY", "CA"), ("GLY", "C"), ("GLY", "O"), ("SER", "N"), ("SER", "CA")},
    ]
    for u, heavy in enumerate(expected):
        assert _heavy(atoms, units.unit_atoms(u)) == heavy, f"unit {u}"
    # hydrogens: ACE 3 + ALA (H, HA, 3 HB) + GLY (H, HA2, HA3) in the first dipeptide, and so on
    real_h = [int((atoms.numbers[units.unit_atoms(u)] == 1).sum()) for u in range(5)]
    assert real_h == [3 + 5 + 3, 1 + 3 + 2, 2 + 5 + 4, 1 + 3, 2 + 2]
    # caps (anchor -> partner) by atom name
    caps = []
    for u in range(5):
        rows = (units.batch == u) & units.is_cap
        caps.append(
            sorted(
                (
                    str(atoms.arrays["atomtypes"][a]),
                    str(atoms.arrays["residuenames"][a]),
                    str(atoms.arrays["atomtypes"][b]),
                )
                for a, b in zip(units.source[rows], units.partner[rows])
            )
        )
    assert caps[0] == [("CA", "GLY", "C")]
    assert caps[1] == sorted([("CA", "ALA", "N"), ("CA", "ALA", "CB"), ("CA", "SER", "CB"), ("CA", "SER", "C")])
    assert caps[2] == [("CA", "GLY", "N")]
    assert caps[3] == sorted([("CA", "ALA", "N"), ("CA", "ALA", "CB"), ("CA", "GLY", "C")])
    assert caps[4] == sorted([("CA", "GLY", "N"), ("CA", "SER", "CB"), ("CA", "SER", "C")])
    assert [int((units.batch == u).sum()) for u in (3, 4)] == [12, 12]  # AI2BMD's 12-atom ACE-NME
    np.testing.assert_array_equal(units.coverage(), np.ones(len(atoms)))


def test_proline_cap_on_the_ring_bond() -> None:
    atoms = peptide_from_sequence("AP", seed=0, amber=False)
    units = fragment(atoms)
    rows = (units.batch == 0) & units.is_cap  # ACE-ALA-NME(PRO)
    partners = {str(atoms.arrays["atomtypes"][b]) for b in units.partner[rows]}
    assert partners == {"CD", "CB", "C"}  # PRO's N-CD, CA-CB, CA-C bonds are cut


def test_caps_lie_on_the_cut_bond(tripeptide) -> None:
    from visnet.inference.fragmented import FragmentedProtein

    protein = FragmentedProtein.build(tripeptide, frozenset({1, 6, 7, 8}), None)
    pos = torch.as_tensor(tripeptide.positions)
    unit_pos = protein.unit_positions(pos).numpy()
    u = protein.units
    anchor, partner = tripeptide.positions[u.source[u.is_cap]], tripeptide.positions[u.partner[u.is_cap]]
    caps = unit_pos[u.is_cap]
    np.testing.assert_allclose(np.linalg.norm(caps - anchor, axis=1), [X_H_BOND_LENGTH[6]] * len(caps), rtol=1e-12)
    cross = np.cross(caps - anchor, partner - anchor)
    np.testing.assert_allclose(cross, 0.0, atol=1e-12)
    np.testing.assert_array_equal(unit_pos[~u.is_cap], tripeptide.positions[u.source[~u.is_cap]])


def test_shared_pairs_cover_each_unit(tripeptide) -> None:
    units = fragment(tripeptide)
    pairs = {tuple(p) for p in units.shared_pairs().tolist()}
    gly_h = [i for i in range(len(tripeptide)) if tripeptide.arrays["residuenames"][i] == "GLY"]
    ace = [i for i in range(len(tripeptide)) if tripeptide.arrays["residuenames"][i] == "ACE"]
    ser_side = [i for i in range(len(tripeptide)) if tripeptide.arrays["atomtypes"][i] == "OG"]
    assert (min(ace[0], gly_h[0]), max(ace[0], gly_h[0])) in pairs  # ACE and GLY N share the first unit
    assert (ace[0], ser_side[0]) not in pairs  # ACE and SER's side chain share none


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda a: a.arrays["residuenames"].__setitem__(slice(0, 6), "HOH"), "chain A HOH 0: not a standard"),
        (lambda a: a.positions.__setitem__(slice(6, None), a.positions[6:] + [0, 0, 5.0]), "chain break in chain A"),
        (
            lambda a: a.arrays["atomtypes"].__setitem__(np.flatnonzero(a.arrays["atomtypes"] == "CA")[0], "XX"),
            "ALA 1: missing backbone atom(s) CA",
        ),
        # a second copy of the peptide with the same chain id: its residues would merge with the first's
        (lambda a: a.extend(a.copy()), "chain A ACE 0 appears twice (its atoms are not together)"),
    ],
)
def test_topology_errors_name_the_residue(tripeptide, edit, message) -> None:
    atoms = tripeptide.copy()
    edit(atoms)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ProteinTopology.from_atoms(atoms)


def test_no_hydrogens_refused(tripeptide) -> None:
    heavy = tripeptide[tripeptide.numbers > 1]
    with pytest.raises(ValueError, match=r"chain A ACE 0 has no hydrogens"):
        fragment(heavy)


def test_missing_residue_arrays_refused() -> None:
    from ase.build import molecule

    with pytest.raises(ValueError, match="read_protein"):
        fragment(molecule("CH4"))


def test_nonbonded_equals_double_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 12
    pos = torch.rand(n, 3, generator=gen, dtype=torch.float64) * 8
    q = torch.randn(n, generator=gen, dtype=torch.float64) * 0.4
    s = 2.5 + torch.rand(n, generator=gen, dtype=torch.float64)
    e = torch.rand(n, generator=gen, dtype=torch.float64) * 0.01
    excluded = torch.tensor([[0, 1], [2, 7], [3, 11]])
    skip = {tuple(p) for p in excluded.tolist()}
    p = pos.clone().requires_grad_(True)
    ref = sum(
        COULOMB_EV_A * q[i] * q[j] / (p[i] - p[j]).norm()
        + 4
        * (e[i] * e[j]).sqrt()
        * ((0.5 * (s[i] + s[j]) / (p[i] - p[j]).norm()) ** 12 - (0.5 * (s[i] + s[j]) / (p[i] - p[j]).norm()) ** 6)
        for i in range(n)
        for j in range(i + 1, n)
        if (i, j) not in skip
    )
    (grad,) = torch.autograd.grad(ref, p)
    energy, forces, per_atom = nonbonded(pos, q, s, e, excluded)
    assert float(energy) == pytest.approx(float(ref.detach()), rel=1e-12, abs=1e-12)
    torch.testing.assert_close(forces, -grad, rtol=1e-10, atol=1e-12)
    assert float(per_atom.sum()) == pytest.approx(float(energy), rel=1e-12, abs=1e-12)
