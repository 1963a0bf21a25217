"""Attention weights as the layer uses them; bad input to explain: one-line errors and notes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import molecule

import visnet
from visnet.explain import explain
from visnet.explain.attention import attention_weights
from visnet.explain.explain import SubsampledWarning
from visnet.model.scatter import scatter_sum


def test_attention_weights_are_those_the_layer_weighs_its_messages_by() -> None:
    """Make the last layer's update its attention-weighted message count: values v = 1, dv = SiLU(3)
    per channel, o3 = identity, everything else of the update zero. Then the layer's dx_i of each
    head's channels is SiLU(3) Σ_j a_ij,h: a black-box check of the weights ``attention_weights`` reads."""
    model = visnet.load_model("default", dtype="float64").eval()
    layer = model.representation_model.vis_mp_layers[-1]
    h = layer.hidden_channels
    with torch.no_grad():
        layer.v_proj.weight.zero_()
        layer.v_proj.bias.fill_(1.0)
        layer.dv_proj.weight.zero_()
        layer.dv_proj.bias.fill_(3.0)
        layer.o_proj.weight.zero_()
        layer.o_proj.bias.zero_()
        layer.o_proj.weight[2 * h :].copy_(torch.eye(h))
    atoms = molecule("CH3CH2OH")
    z, pos = torch.as_tensor(atoms.numbers), torch.as_tensor(atoms.positions)
    outputs = []
    handle = layer.register_forward_hook(lambda module, args, out: outputs.append(out[0]))
    maps = attention_weights(model, z, pos)
    handle.remove()
    dx = outputs[-1].view(len(atoms), layer.num_heads, layer.head_dim)
    centres = torch.as_tensor(maps.edge_index[1])
    summed = scatter_sum(torch.as_tensor(maps.weights[-1]), centres, len(atoms)) + torch.as_tensor(
        maps.self_weights[-1]
    )
    expected = summed * torch.nn.functional.silu(torch.tensor(3.0, dtype=torch.float64))
    assert torch.allclose(dx, expected.unsqueeze(-1).expand_as(dx), atol=1e-10)  # float64 sums of ~10 terms
    assert expected.abs().max() > 1e-3
    assert maps.weights.shape == (
        len(model.representation_model.vis_mp_layers),
        maps.edge_index.shape[1],
        layer.num_heads,
    )
    assert (maps.distances > 0).all() and (maps.distances < model.cutoff).all()


def test_unknown_property_names_those_the_model_predicts() -> None:
    with pytest.raises(ValueError, match=r"no model predicts property 'zpve'.*'gap'"):
        explain("CCO", model="qm9", property="zpve", attention=False)
    with pytest.raises(ValueError, match="several properties"):
        explain("CCO", model="qm9", attention=False)


def test_element_outside_the_model_is_named() -> None:
    with pytest.raises(ValueError, match=r"S \(Z=16\)"):
        explain("CS", attention=False)


def test_decomposition_of_a_non_energy_is_refused() -> None:
    with pytest.raises(ValueError, match="'decomposition' is for energies"):
        explain("CCO", model="qm9", property="gap", method="decomposition", attention=False)


def test_frames_with_other_atoms_are_refused() -> None:
    with pytest.raises(ValueError, match="frame 1 has other atoms"):
        explain([molecule("CH4"), molecule("NH3")], attention=False)


def test_long_trajectory_is_subsampled_and_says_so() -> None:
    base = molecule("CH4")
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(30):
        atoms = base.copy()
        atoms.positions += rng.normal(scale=0.02, size=atoms.positions.shape)
        frames.append(atoms)
    with pytest.warns(SubsampledWarning, match="30 frames"):
        e = explain(frames, max_frames=10, attention=False)
    assert e.values.shape == (10, 5)
    assert e.frames[0] == 0 and e.frames[-1] == 29
    assert any("30 frames" in note for note in e.notes)
    np.testing.assert_allclose(e.values.sum(axis=1), e.totals, atol=1e-9)
