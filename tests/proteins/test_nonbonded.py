"""The shifted-force (cutoff) form of the Amber Coulomb + LJ term: against a plain double loop,
smooth at the cutoff, and the exact all-pairs sum recovered as the cutoff grows."""

from __future__ import annotations

import pytest
import torch

from visnet.proteins.nonbonded import COULOMB_EV_A, nonbonded, nonbonded_cutoff, shifted_force_pair_energies


def _system(n: int = 30, box: float = 12.0, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    pos = torch.rand(n, 3, generator=gen, dtype=torch.float64) * box
    q = torch.randn(n, generator=gen, dtype=torch.float64) * 0.4
    q -= q.mean()  # neutral, as a protein
    s = 2.5 + torch.rand(n, generator=gen, dtype=torch.float64)
    e = torch.rand(n, generator=gen, dtype=torch.float64) * 0.01
    return pos, q, s, e


def _u(r, qq, s, e):
    return COULOMB_EV_A * qq / r + 4 * e * ((s / r) ** 12 - (s / r) ** 6)


def test_cutoff_form_equals_double_loop() -> None:
    pos, q, s, e = _system()
    cutoff = 7.0
    p = pos.clone().requires_grad_(True)
    pairs, ref = [], 0.0
    for i in range(len(pos)):
        for j in range(i + 1, len(pos)):
            r = (p[i] - p[j]).norm()
            if (i + j) % 5 == 0 or float(r.detach()) >= cutoff:  # a few pairs "excluded", the far ones cut
                continue
            pairs.append((i, j))
            qq, sij, eij = q[i] * q[j], 0.5 * (s[i] + s[j]), (e[i] * e[j]).sqrt()
            rc = torch.tensor(cutoff, dtype=torch.float64, requires_grad=True)
            u_c = _u(rc, qq, sij, eij)
            (du_c,) = torch.autograd.grad(u_c, rc, create_graph=False)
            ref = ref + _u(r, qq, sij, eij) - u_c.detach() - (r - cutoff) * du_c
    (grad,) = torch.autograd.grad(ref, p)
    energy, forces, per_atom = nonbonded_cutoff(pos, q, s, e, torch.tensor(pairs), cutoff)
    assert len(pairs) > 50
    assert float(energy) == pytest.approx(float(ref.detach()), rel=1e-12, abs=1e-12)
    torch.testing.assert_close(forces, -grad, rtol=1e-10, atol=1e-12)
    assert float(per_atom.sum()) == pytest.approx(float(energy), rel=1e-12, abs=1e-12)


def test_energy_and_force_vanish_at_the_cutoff() -> None:
    cutoff = 10.0
    r = torch.tensor([cutoff - 1e-6, cutoff, cutoff + 1.0], dtype=torch.float64)
    vec = torch.stack([r, torch.zeros_like(r), torch.zeros_like(r)], dim=1)
    qq = torch.full_like(r, -0.64)  # two opposite charges of 0.8 e: 0.9 eV apart at 10 Å unshifted
    energy, grad = shifted_force_pair_energies(vec, qq, torch.full_like(r, 3.0), torch.full_like(r, 0.01), cutoff)
    # 1e-6 Å inside: E ~ u''(rc) d^2 / 2 ~ 1e-14 eV, dE/dr ~ u''(rc) d ~ 2e-8 eV/Å
    assert abs(float(energy[0])) < 1e-12 and abs(float(grad[0, 0])) < 1e-7
    assert energy[1:].tolist() == [0.0, 0.0] and grad[1:].abs().max() == 0.0


def test_exact_sum_recovered_for_a_long_cutoff() -> None:
    pos, q, s, e = _system(seed=1)
    excluded = torch.tensor([[0, 1], [2, 7], [3, 11]])
    exact, exact_forces, _ = nonbonded(pos, q, s, e, excluded)
    i, j = torch.triu_indices(len(pos), len(pos), offset=1)
    keep = ~torch.isin(i * len(pos) + j, excluded[:, 0] * len(pos) + excluded[:, 1])
    pairs = torch.stack([i[keep], j[keep]], dim=1)
    errors = []
    for cutoff in (1e3, 1e5):
        energy, forces, _ = nonbonded_cutoff(pos, q, s, e, pairs, cutoff)
        errors.append(abs(float(energy - exact)))
        # the shift's force is k qq / rc^2 per pair: below 1e-4 eV/Å at rc = 1000 Å
        torch.testing.assert_close(forces, exact_forces, rtol=0, atol=1e-4 * 1e3 / cutoff)
    # the energy shift is ~ -2 k sum(qq) / rc: it falls as 1/rc
    assert errors[1] < 2e-2 * errors[0] + 1e-12
