"""The one model interface (``visnet.model.interface.AtomisticModel``): the eager, compiled and
exported forms implement it with their own attributes (no forwarding, no fake head), and agree."""

from __future__ import annotations

import inspect

import pytest
import torch
from helpers import small_model

from visnet import ViSNet
from visnet.accel.compile import CompiledViSNet
from visnet.accel.export import export_metadata
from visnet.accel.exported import ExportedViSNet
from visnet.io.model_files import atomic_number, model_elements
from visnet.model.interface import AtomisticModel, model_form

# What the code above the model layer reads from a model, besides its call.
DECLARED = {
    "cutoff",
    "max_z",
    "elements",
    "metadata",
    "hparams",
    "output_key",
    "predicts_energy",
    "per_atom_output",
    "vector_output",
    "derivative",
    "dtype",
    "device",
    "form",
    "eager_model",
}
AGREE = sorted(DECLARED - {"form", "eager_model", "metadata"})


def test_the_protocol_declares_what_callers_read() -> None:
    declared = {name for name in vars(AtomisticModel) if not name.startswith("_")}
    assert declared == DECLARED
    call = inspect.signature(AtomisticModel.__call__)
    assert list(call.parameters)[1:] == [*inspect.signature(ViSNet.forward).parameters][1:]


def test_eager_and_compiled_forms_implement_it_and_agree() -> None:
    model = small_model(elements=["H", "C", "O"]).eval()
    compiled = CompiledViSNet(model, backend="eager", verbose=False)
    assert isinstance(model, AtomisticModel) and isinstance(compiled, AtomisticModel)
    assert (model.form, compiled.form) == ("eager", "compiled")
    assert model.eager_model is model and compiled.eager_model is model
    assert {name: getattr(compiled, name) for name in AGREE} == {name: getattr(model, name) for name in AGREE}
    assert model.elements == frozenset({1, 6, 8}) and model_elements(compiled) == model.elements
    compiled.metadata = {"units": {"energy": "eV", "length": "Å"}, "note": "set on the wrapper"}
    assert model.metadata["note"] == "set on the wrapper"


def test_compiled_forwards_no_unknown_attribute() -> None:
    assert "__getattr__" not in vars(CompiledViSNet)
    compiled = CompiledViSNet(small_model().eval(), backend="eager", verbose=False)
    with pytest.raises(AttributeError):
        compiled.representation_model  # noqa: B018  (the eager model's part, not the interface)


def test_exported_form_implements_it_without_a_head() -> None:
    """The package's metadata is what ``export_model`` writes (built here without compiling)."""
    model = small_model().eval()
    exported = ExportedViSNet(None, export_metadata(model), "x.pt2")
    assert isinstance(exported, AtomisticModel)
    assert exported.form == "exported" and exported.eager_model is None
    assert not hasattr(exported, "output_model")
    assert {name: getattr(exported, name) for name in AGREE} == {name: getattr(model, name) for name in AGREE}


def test_model_form_reads_the_class_only() -> None:
    half_built = ExportedViSNet(None, {"dtype": "float64", "device": "cpu", "cutoff": 4.0}, "x.pt2")
    assert model_form(half_built) == "exported"  # its max_z would raise KeyError
    assert model_form(ViSNet) is None and model_form(torch.nn.Linear(1, 1)) is None and model_form("x") is None


def test_default_elements_and_symbols() -> None:
    model = small_model()
    assert model.elements == frozenset(range(1, model.max_z))
    assert atomic_number("O") == 8 and atomic_number(6) == 6
    with pytest.raises(ValueError, match="unknown element 'Xx'"):
        atomic_number("Xx")


def test_visnet_class_stays_small() -> None:
    """The nn.Module holds the network; checks, neighbour lists and the description live beside it."""
    lines, _ = inspect.getsourcelines(ViSNet)
    assert len(lines) < 200
