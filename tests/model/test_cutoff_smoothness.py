"""Smoothness at the cutoff: the polynomial envelope makes forces C1 (energy C2) across r_c, the
cosine only C0 forces; older model files without ``cutoff_type`` load as the cosine they were
trained with; vibrational frequencies do not depend on the finite-difference step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.vibrations import Vibrations
from conftest import randomize_biases, shared_file

from visnet import ViSNet, ViSNetCalculator, load_model, save_model
from visnet.model.radial import POLYNOMIAL_EXPONENT, CosineCutoff, PolynomialCutoff
from visnet.training.module import architecture_differences

PAIR_CUTOFF = 3.0  # Å: a small model's cutoff; the pair is probed around it
PAIR_Z = torch.tensor([6, 8])  # a C-O pair: distinct elements, so both embeddings enter
# Distance of the probes from r_c and the central-difference step (Å). Float64 rounding of the
# force (~1e-16 of its O(1) intermediates) over 2h gives ~1e-10 eV/Å² of noise in dF/dr; the
# polynomial's residual jump is (third-derivative jump) * delta ~ 1e-6, the cosine's O(1e-2).
DELTA = 1e-6
STEP = DELTA / 2


def _pair_model(cutoff_type: str) -> ViSNet:
    """A float64 lmax-2 model with trained-like random biases (fresh biases are zero)."""
    torch.manual_seed(0)
    model = ViSNet(
        hidden_channels=16, num_layers=2, num_heads=2, lmax=2, max_z=10, cutoff=PAIR_CUTOFF, cutoff_type=cutoff_type
    )
    return randomize_biases(model.double()).eval()


def _pair(model: ViSNet, r: float) -> tuple[float, float]:
    """Energy (eV) and the force on the second atom along the bond (eV/Å) at separation r Å."""
    pos = torch.tensor([[0.0, 0.0, 0.0], [r, 0.0, 0.0]], dtype=torch.float64)
    out = model(PAIR_Z, pos)
    return float(out["energy"].detach()), float(out["forces"][1, 0].detach())


def _force_slope(model: ViSNet, r: float) -> float:
    """dF/dr (eV/Å²) by central differences of the autograd force at r Å."""
    return (_pair(model, r + STEP)[1] - _pair(model, r - STEP)[1]) / (2 * STEP)


def _slope_jump(model: ViSNet, delta: float) -> float:
    """dF/dr just inside minus just outside r_c, probes ``delta`` Å away from it."""
    return _force_slope(model, PAIR_CUTOFF - delta) - _force_slope(model, PAIR_CUTOFF + delta)


def test_polynomial_envelope_zeroes_value_and_two_derivatives_at_cutoff():
    """u(r_c) = u'(r_c) = u''(r_c) = 0 from inside; u''' jumps by p(p+1)(p+2)/r_c^3; u(0) = 1."""
    cutoff = 5.0
    envelope = PolynomialCutoff(cutoff)
    r = torch.tensor([cutoff * (1 - 1e-12)], dtype=torch.float64, requires_grad=True)
    u = envelope(r)
    (d1,) = torch.autograd.grad(u.sum(), r, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), r, create_graph=True)
    (d3,) = torch.autograd.grad(d2.sum(), r)
    p = POLYNOMIAL_EXPONENT
    # 1e-12 of r_c inside: exact values u ~ 56 (1e-12)^3, u' ~ 1e-23 /Å, u'' ~ 1e-11 /Å² (the
    # factored evaluation has no cancellation, so rounding stays relative to these)
    assert abs(float(u.detach())) < 1e-30 and abs(float(d1.detach())) < 1e-20 and abs(float(d2.detach())) < 1e-10
    assert math.isclose(float(d3), -p * (p + 1) * (p + 2) / cutoff**3, rel_tol=1e-6)
    outside = torch.tensor([cutoff, 2 * cutoff, 1e6], dtype=torch.float64)
    assert envelope(outside).abs().max() == 0 and float(envelope(torch.zeros(1, dtype=torch.float64))) == 1.0


@pytest.mark.parametrize("exponent", [2, 3, 6, 9])
def test_polynomial_envelope_is_dimenets_polynomial(exponent: int):
    """The factored evaluation equals DimeNet's expanded form (to float64 rounding of its O(p^2)
    coefficients) and stays in [0, 1], decreasing."""
    p, cutoff = exponent, 5.0
    r = torch.linspace(0.0, 1.2 * cutoff, 2001, dtype=torch.float64)
    x = r / cutoff
    expanded = (1 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)) * (
        x < 1
    )
    u = PolynomialCutoff(cutoff, exponent)(r)
    torch.testing.assert_close(u, expanded, rtol=0, atol=1e-13)
    eps = 4 * torch.finfo(torch.float64).eps  # near r = 0, u = 1 - O(x^p): a few ulps of rounding
    assert bool((u >= 0).all() and (u <= 1 + eps).all() and (u.diff() <= eps).all())


def test_cosine_second_derivative_jumps_at_cutoff():
    """The kink the polynomial removes: f''(r_c^-) = pi^2 / (2 r_c^2), f'' = 0 beyond."""
    cutoff = 5.0
    r = torch.tensor([cutoff * (1 - 1e-12)], dtype=torch.float64, requires_grad=True)
    (d1,) = torch.autograd.grad(CosineCutoff(cutoff)(r).sum(), r, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), r)
    assert math.isclose(float(d2), math.pi**2 / (2 * cutoff**2), rel_tol=1e-9)


def test_pair_force_is_c1_across_cutoff_with_polynomial():
    """dF/dr inside and outside r_c agree, and the residual shrinks linearly with the distance
    from r_c (only the third derivative jumps): C1 forces."""
    model = _pair_model("polynomial")
    jump = _slope_jump(model, DELTA)
    assert abs(jump) < 1e-5
    assert math.isclose(_slope_jump(model, 10 * DELTA) / jump, 10.0, rel_tol=1e-2)


def test_pair_force_slope_jumps_across_cutoff_with_cosine():
    """The same probe shows the cosine's kink: a jump of dF/dr that does not shrink toward r_c."""
    model = _pair_model("cosine")
    jump = _slope_jump(model, DELTA)
    assert abs(jump) > 1e-2
    assert math.isclose(_slope_jump(model, 10 * DELTA), jump, rel_tol=1e-3)


@pytest.mark.parametrize("cutoff_type", ["cosine", "polynomial"])
def test_pair_energy_and_force_continuous_across_cutoff(cutoff_type: str):
    """Both envelopes give continuous energy and force; beyond r_c the pair is two free atoms."""
    model = _pair_model(cutoff_type)
    e_in, f_in = _pair(model, PAIR_CUTOFF - DELTA)
    e_out, f_out = _pair(model, PAIR_CUTOFF + DELTA)
    # cosine: |F(r_c - delta)| ~ |dF/dr| delta ~ 1e-8 eV/Å and |dE| ~ delta^2 (float64 rounding: 1e-15)
    assert abs(e_in - e_out) < 1e-12 and abs(f_in - f_out) < 1e-6
    assert f_out == 0.0


def test_model_file_without_cutoff_type_loads_as_cosine(tmp_path, ethanol):
    """The bundled model (written before cutoff_type existed, trained with the cosine) and any file
    lacking the key load as "cosine": the energies they were validated with."""
    z, pos = ethanol
    bundled = load_model("default", dtype="float64")
    assert bundled.hparams["cutoff_type"] == "cosine"
    hparams = bundled.hparams
    cosine = ViSNet(**hparams).double()
    cosine.load_state_dict(bundled.state_dict())
    polynomial = ViSNet(**{**hparams, "cutoff_type": "polynomial"}).double()
    polynomial.load_state_dict(bundled.state_dict())
    energy = float(bundled(z, pos)["energy"].detach())
    assert energy == float(cosine.eval()(z, pos)["energy"].detach())
    assert abs(energy - float(polynomial.eval()(z, pos)["energy"].detach())) > 1e-3  # the key matters
    path = tmp_path / "old.pt"
    save_model(cosine, path)
    payload = torch.load(path, weights_only=True)
    del payload["hyperparameters"]["cutoff_type"]
    torch.save(payload, path)
    reloaded = load_model(path, dtype="float64")
    assert reloaded.hparams["cutoff_type"] == "cosine"
    assert float(reloaded(z, pos)["energy"].detach()) == energy


def test_new_models_default_to_polynomial_and_old_checkpoints_resume_as_cosine():
    """New models get the C2 envelope; a checkpoint without the key is not a different architecture
    from a cosine model (so old runs resume)."""
    model = ViSNet(hidden_channels=16, num_layers=1, num_heads=2, max_z=10)
    assert model.hparams["cutoff_type"] == "polynomial"
    cosine = ViSNet(hidden_channels=16, num_layers=1, num_heads=2, max_z=10, cutoff_type="cosine").hparams
    old = {k: v for k, v in cosine.items() if k != "cutoff_type"}
    assert architecture_differences(old, cosine) == []
    assert architecture_differences(old, model.hparams) == ["cutoff_type 'cosine' → 'polynomial'"]
    with pytest.raises(ValueError, match="cutoff_type"):
        ViSNet(hidden_channels=16, num_layers=1, num_heads=2, max_z=10, cutoff_type="cos")


def _frequencies(atoms: Atoms, model: ViSNet, delta: float, workdir) -> np.ndarray:
    """Harmonic frequencies (cm^-1, imaginary as complex) by ASE's central differences of step delta Å."""
    atoms = atoms.copy()
    atoms.calc = ViSNetCalculator(model, device="cpu")
    vib = Vibrations(atoms, delta=delta, name=str(workdir / f"vib_{delta}"))
    vib.run()
    return vib.get_frequencies()


def test_vibrational_frequencies_stable_under_displacement_size(tmp_path):
    """Bundled model on the rMD17 aspirin frame whose closest pair to r_c sits within 1e-5 Å of it,
    so every displacement of that pair crosses the cutoff. Central differences of a smooth energy
    err by O(delta^2): halving delta quarters the change, and the modes above 200 cm^-1 move by
    well under 0.2 %. (A kink would add an error that does not shrink as delta^2.)"""
    model = load_model("default", dtype="float64")
    data = np.load(shared_file("rmd17", "rmd17_aspirin_train1000.npz"))
    frames = data["R"]
    upper = np.triu_indices(len(data["z"]), 1)
    distances = np.linalg.norm(frames[:, :, None] - frames[:, None], axis=-1)[:, upper[0], upper[1]]
    gap = np.abs(distances - model.cutoff).min(axis=1)
    frame = int(gap.argmin())
    assert gap[frame] < 1e-5
    atoms = Atoms(numbers=data["z"], positions=frames[frame])
    nu = {d: _frequencies(atoms, model, d, tmp_path) for d in (0.0025, 0.005, 0.01)}
    stiff = nu[0.005].real > 200.0  # soft modes (and rotations/translations) are noise-dominated
    coarse = np.abs(nu[0.01] - nu[0.005])[stiff]
    fine = np.abs(nu[0.005] - nu[0.0025])[stiff]
    assert (coarse / nu[0.005].real[stiff]).max() < 2e-3
    assert 3.0 < coarse.max() / fine.max() < 5.0  # delta^2 convergence: 4 for a smooth energy
