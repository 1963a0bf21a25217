"""TorchSim ViSNetModel: batched states equal the calculator one by one; stress sign; torch_sim's validator; NVT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.io import read
from ase.stress import voigt_6_to_full_3x3_stress

ts = pytest.importorskip("torch_sim")
from torch_sim.models.interface import validate_model_outputs  # noqa: E402

from visnet import ViSNet, ViSNetCalculator  # noqa: E402
from visnet.integrations.torchsim import ViSNetModel  # noqa: E402

STRUCTURES = Path(__file__).resolve().parents[2] / "visnet" / "pretrained" / "structures"
CPU = torch.device("cpu")
# float64 throughout: a batched graph sums the same terms as a single one in another order
# (~1e-15 relative per op over ~1e4 ops), far inside 1e-9.
RTOL = 1e-9


def reference(atoms: Atoms, stress: bool = False) -> dict[str, np.ndarray]:
    atoms = atoms.copy()
    atoms.calc = ViSNetCalculator(device="cpu", dtype="float64")
    out = {"energy": np.array(atoms.get_potential_energy()), "forces": atoms.get_forces()}
    if stress:
        out["stress"] = voigt_6_to_full_3x3_stress(atoms.get_stress())
    return out


def boxes() -> list[Atoms]:
    """Two periodic cells of organic molecules (9 Å cubic and 8.5 Å triclinic, images within the cutoff)."""
    first, second = read(STRUCTURES / "ethanol.xyz"), read(STRUCTURES / "malonaldehyde.xyz")
    one = first.copy()
    one.set_cell([9.0, 9.0, 9.0])
    one.center()
    two = first + second.copy()
    two.positions[len(first) :] += [4.0, 4.0, 4.0]
    two.set_cell([[8.5, 0.0, 0.0], [1.0, 8.5, 0.0], [0.5, 0.8, 9.0]])
    for atoms in (one, two):
        atoms.pbc = True
    return [one, two]


@pytest.fixture(scope="module")
def model() -> ViSNetModel:
    return ViSNetModel("default", device="cpu", dtype="float64")


def test_many_molecules_match_the_calculator(model):
    molecules = [read(STRUCTURES / f"{name}.xyz") for name in ("ethanol", "aspirin", "benzene", "uracil")]
    state = ts.io.atoms_to_state(molecules, CPU, torch.float64)
    out = model(state)
    assert out["energy"].shape == (4,)
    assert out["forces"].shape == (state.n_atoms, 3)
    assert "stress" not in out  # molecules have no cell
    assert not out["energy"].requires_grad and not out["forces"].requires_grad
    start = 0
    for i, atoms in enumerate(molecules):
        ref = reference(atoms)
        stop = start + len(atoms)
        assert out["energy"][i].item() == pytest.approx(ref["energy"], rel=RTOL)
        np.testing.assert_allclose(out["forces"][start:stop].numpy(), ref["forces"], rtol=0, atol=RTOL * 10)
        start = stop


def test_periodic_boxes_match_the_calculator_with_stress(model):
    cells = boxes()
    out = model(ts.io.atoms_to_state(cells, CPU, torch.float64))
    assert out["stress"].shape == (2, 3, 3)
    start = 0
    for i, atoms in enumerate(cells):
        ref = reference(atoms, stress=True)
        stop = start + len(atoms)
        assert out["energy"][i].item() == pytest.approx(ref["energy"], rel=RTOL)
        np.testing.assert_allclose(out["forces"][start:stop].numpy(), ref["forces"], rtol=0, atol=RTOL * 10)
        np.testing.assert_allclose(out["stress"][i].numpy(), ref["stress"], rtol=0, atol=RTOL * 10)
        start = stop


def test_stress_is_ase_convention_de_by_dstrain_over_volume(model):
    """stress = (1/V) dE/dε (tensile positive), the sign torch_sim's NPT integrators expect."""
    atoms = boxes()[1]
    stress = model(ts.io.atoms_to_state([atoms], CPU, torch.float64))["stress"][0].numpy()
    h = 1e-5
    numerical = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            energies = []
            for sign in (1.0, -1.0):
                strain = np.eye(3)
                strain[a, b] += sign * h
                strained = atoms.copy()
                strained.set_cell(atoms.cell @ strain, scale_atoms=True)
                energies.append(model(ts.io.atoms_to_state([strained], CPU, torch.float64))["energy"].item())
            numerical[a, b] = (energies[0] - energies[1]) / (2 * h) / atoms.get_volume()
    # central differences: O(h²) ≈ 1e-10 truncation, float64 rounding ~1e-16/h ≈ 1e-11 eV per ε.
    np.testing.assert_allclose(stress, numerical, atol=1e-7)
    assert np.abs(stress).max() > 1e-4  # a non-trivial stress was compared


def test_torch_sim_validator_passes():
    """validate_model_outputs builds Si and Fe crystals: a small fresh model covering Z < 30."""
    torch.manual_seed(0)
    net = ViSNet(lmax=1, num_heads=2, num_layers=2, hidden_channels=16, num_rbf=8, max_z=30, cutoff=4.0)
    validate_model_outputs(ViSNetModel(net, device="cpu", dtype="float64"), CPU, torch.float64)


def test_float32_and_state_dict(model):
    molecules = [read(STRUCTURES / "ethanol.xyz"), read(STRUCTURES / "toluene.xyz")]
    state = ts.io.atoms_to_state(molecules, CPU, torch.float32)
    single = ViSNetModel("default", device="cpu", dtype="float32")(state)
    double = model(ts.io.atoms_to_state(molecules, CPU, torch.float64))
    # float32 model vs float64: ~1e-7 relative per op; energies ~1e2 eV, forces ~1 eV/Å.
    np.testing.assert_allclose(single["energy"].double().numpy(), double["energy"].numpy(), rtol=1e-5)
    np.testing.assert_allclose(single["forces"].double().numpy(), double["forces"].numpy(), atol=1e-4)
    as_dict = {
        "positions": state.positions,
        "cell": state.cell,
        "pbc": state.pbc,
        "atomic_numbers": state.atomic_numbers,
        "system_idx": state.system_idx,
    }
    from_dict = ViSNetModel("default", device="cpu", dtype="float32")(as_dict)
    torch.testing.assert_close(from_dict["energy"], single["energy"])


def test_unknown_element_is_named(model):
    state = ts.io.atoms_to_state([bulk("NaCl", "rocksalt", a=5.64)], CPU, torch.float64)
    with pytest.raises(ValueError, match=r"atom 0: Na.*atom 1: Cl.*covers H, C, N, O"):
        model(state)


def test_property_model_is_refused_naming_its_property():
    with pytest.raises(ValueError, match="needs an energy model.*'gap'"):
        ViSNetModel(model="qm9_gap", device="cpu")


def test_batched_nvt_runs(model):
    molecules = [read(STRUCTURES / "ethanol.xyz"), read(STRUCTURES / "malonaldehyde.xyz")]
    final = ts.integrate(
        system=molecules,
        model=model,
        integrator=ts.nvt_langevin,
        n_steps=20,
        temperature=300.0,
        timestep=0.0005,  # ps
    )
    assert final.n_systems == 2
    assert torch.isfinite(final.positions).all() and torch.isfinite(final.energy).all()
    moved = (final.positions - ts.io.atoms_to_state(molecules, CPU, torch.float64).positions).norm(dim=1)
    assert 0 < moved.max() < 0.5  # 10 fs at 300 K: hundredths of an Å, nothing flew apart


def slab() -> Atoms:
    """A 2x2 graphene sheet, pbc (True, True, False), 10 Å of cell along z, one atom buckled."""
    from ase.build import graphene

    atoms = graphene(size=(2, 2, 1), vacuum=5.0)
    atoms.positions[0, 2] += 0.3
    return atoms


def test_slab_with_its_periodic_directions_matches_the_calculator():
    """red-team round 3, item 11: torch_sim 0.3 turns the slab's (T, T, F) into pbc=False; told
    pbc=(T, T, F), the adapter computes the slab (not a molecule: ~5 eV apart), with no stress (as
    the calculator: a slab's volume is vacuum), and an atom moved by a lattice vector changes nothing."""
    atoms = slab()
    state = ts.io.atoms_to_state([atoms], CPU, torch.float64)
    assert state.pbc is False  # what torch_sim 0.3 makes of (T, T, F)
    model = ViSNetModel("default", device="cpu", dtype="float64", pbc=(True, True, False))
    out = model(state)
    ref = reference(atoms)
    assert out["energy"].item() == pytest.approx(ref["energy"], rel=RTOL)
    np.testing.assert_allclose(out["forces"].numpy(), ref["forces"], rtol=0, atol=RTOL * 10)
    assert "stress" not in out
    as_molecule = atoms.copy()
    as_molecule.pbc = False
    assert abs(out["energy"].item() - reference(as_molecule)["energy"]) > 1.0
    moved = atoms.copy()
    moved.positions[1] += moved.cell[0] - 2 * moved.cell[1]
    energy = model(ts.io.atoms_to_state([moved], CPU, torch.float64))["energy"].item()
    assert energy == pytest.approx(ref["energy"], rel=RTOL)


def test_slab_without_its_periodic_directions_is_refused(model):
    with pytest.raises(ValueError, match=r"has a cell but pbc=False.*pbc=\(True, True, False\)\) for a slab"):
        model(ts.io.atoms_to_state([slab()], CPU, torch.float64))


def test_molecule_in_a_box_with_pbc_false_is_a_molecule():
    atoms = read(STRUCTURES / "ethanol.xyz")
    atoms.set_cell([12.0, 12.0, 12.0])
    atoms.center()
    out = ViSNetModel("default", device="cpu", dtype="float64", pbc=False)(
        ts.io.atoms_to_state([atoms], CPU, torch.float64)
    )
    assert out["energy"].item() == pytest.approx(reference(atoms)["energy"], rel=RTOL)
    assert "stress" not in out


def test_batched_nvt_of_slabs_runs():
    model = ViSNetModel("default", device="cpu", dtype="float64", pbc=(True, True, False))
    final = ts.integrate(
        system=[slab(), slab()], model=model, integrator=ts.nvt_langevin, n_steps=5, temperature=300.0, timestep=0.0005
    )
    assert final.n_systems == 2 and torch.isfinite(final.energy).all()
