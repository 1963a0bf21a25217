"""Property-based tests (issue 13): over random molecules, random crystals and random SMILES
strings, the bundled model through the ASE calculator and ``visnet.predict`` either returns finite
results or raises a clear error (``ValueError``, or ``FileNotFoundError`` for a string that looks
like a path) — never NaN, never an exception from inside torch, RDKit or ASE.

Examples are derandomized (the same every run) and few, so the module takes well under a minute.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visnet import predict
from visnet.inference.calculator import ViSNetCalculator

ELEMENTS = [1, 6, 7, 8]  # what the bundled default model knows
SETTINGS = settings(
    max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CLEAR_ERRORS = (ValueError, FileNotFoundError)


@pytest.fixture(scope="module")
def calculator() -> ViSNetCalculator:
    return ViSNetCalculator(model="default", device="cpu")


def _assert_finite(values: dict[str, object]) -> None:
    for name, value in values.items():
        assert np.isfinite(np.asarray(value, dtype=np.float64)).all(), f"{name} is not finite: {value}"


def _single_point(calculator: ViSNetCalculator, atoms: Atoms, stress: bool = False) -> None:
    """Energy and forces (and stress) of ``atoms``: finite, or a clear error naming the culprit."""
    atoms.calc = calculator
    try:
        values = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        if stress:
            values["stress"] = atoms.get_stress()
    except CLEAR_ERRORS as err:
        assert str(err), "an error without a message"
        return
    _assert_finite(values)


# --------------------------------------------------------------------------- molecules


@st.composite
def molecules(draw: st.DrawFn) -> Atoms:
    """1–8 atoms of H, C, N, O in a 6 Å box; some placed 1e-9–0.5 Å from the previous atom."""
    n = draw(st.integers(1, 8))
    numbers = draw(st.lists(st.sampled_from(ELEMENTS), min_size=n, max_size=n))
    positions = []
    for k in range(n):
        base = np.array(draw(st.tuples(*[st.floats(-3.0, 3.0)] * 3)))
        if k and draw(st.booleans()):
            direction = np.array(draw(st.tuples(*[st.floats(-1.0, 1.0)] * 3))) + [1e-3, 0.0, 0.0]
            distance = 10 ** draw(st.floats(-9.0, np.log10(0.5)))
            base = positions[-1] + direction / np.linalg.norm(direction) * distance
        positions.append(base)
    return Atoms(numbers=numbers, positions=positions)


@SETTINGS
@given(atoms=molecules())
def test_random_molecules_finite_or_a_clear_error(calculator: ViSNetCalculator, atoms: Atoms) -> None:
    _single_point(calculator, atoms.copy())
    try:
        [result] = predict(atoms.copy(), model="default")
    except CLEAR_ERRORS as err:
        assert str(err)
        return
    _assert_finite(result.properties)


# --------------------------------------------------------------------------- crystals


@st.composite
def crystals(draw: st.DrawFn) -> Atoms:
    """1–4 atoms in a random (skewed, possibly left-handed) cell of 2.5–7 Å edges, random pbc flags."""
    lengths = draw(st.tuples(*[st.floats(2.5, 7.0)] * 3))
    skew = np.array(draw(st.tuples(*[st.floats(-0.4, 0.4)] * 6)))
    cell = np.diag(lengths)
    cell[1, 0], cell[2, 0], cell[2, 1] = skew[:3] * np.array([lengths[1], lengths[2], lengths[2]])
    cell[0, 1], cell[0, 2], cell[1, 2] = skew[3:] * np.array([lengths[0], lengths[0], lengths[1]])
    if draw(st.booleans()):
        cell[2] *= -1  # left-handed
    n = draw(st.integers(1, 4))
    numbers = draw(st.lists(st.sampled_from(ELEMENTS), min_size=n, max_size=n))
    fractional = np.array(draw(st.lists(st.tuples(*[st.floats(0.0, 1.0)] * 3), min_size=n, max_size=n)))
    pbc = draw(st.tuples(st.booleans(), st.booleans(), st.booleans()))
    return Atoms(numbers=numbers, scaled_positions=fractional, cell=cell, pbc=pbc)


@SETTINGS
@given(atoms=crystals())
def test_random_crystals_finite_or_a_clear_error(calculator: ViSNetCalculator, atoms: Atoms) -> None:
    _single_point(calculator, atoms, stress=bool(atoms.pbc.all()))


# --------------------------------------------------------------------------- SMILES

SMILES_ALPHABET = "CCCNOcno()=#[]+-1234H.@/\\ "
# Valid pieces (some charged or radical), concatenated or joined as fragments.
SMILES_PIECES = [
    "C",
    "CC",
    "O",
    "N",
    "CO",
    "C=O",
    "C#N",
    "N#N",
    "C(=O)O",
    "c1ccccc1",
    "C1CC1",
    "[NH4+]",
    "[O-]",
    "[CH3]",
    "[O][O]",
    "C[N+](=O)[O-]",
]


def smiles_strings() -> st.SearchStrategy[str]:
    """Random strings of SMILES characters (mostly invalid) and random assemblies of valid pieces."""
    assembled = st.tuples(st.lists(st.sampled_from(SMILES_PIECES), min_size=1, max_size=3), st.sampled_from(["", "."]))
    return st.one_of(st.text(SMILES_ALPHABET, min_size=0, max_size=12), assembled.map(lambda t: t[1].join(t[0])))


@SETTINGS
@given(smiles=smiles_strings())
def test_random_smiles_finite_or_a_clear_error(smiles: str) -> None:
    """Random strings of SMILES characters: invalid ones, ions, radicals and unembeddable ones are
    refused with a message; the rest give finite energies and forces."""
    try:
        results = predict(smiles, model="default")
    except CLEAR_ERRORS as err:
        assert str(err)
        return
    for result in results:
        assert result.ok
        _assert_finite(result.properties)


@pytest.mark.parametrize("smiles", ["CCO.O", "O.O.O", "C.C"])
def test_fragment_smiles_give_finite_energies(smiles: str) -> None:
    [result] = predict(smiles, model="default")
    _assert_finite(result.properties)
