"""``accel`` through every entry point: the resolver gives each form, and the calculator,
``visnet.predict``, ``visnet md``, OpenMM and TorchSim pass the option on (``auto`` by default).
No background build starts here (``start_build`` is replaced by a recorder that fails the test)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import small_model

import visnet
from visnet.accel import auto as vauto
from visnet.accel.auto import AutoViSNet
from visnet.accel.compile import CompiledViSNet
from visnet.inference.resolve import resolve_model
from visnet.integrations.engine_model import load_engine_model
from visnet.model.interface import AtomisticModel, model_form


@pytest.fixture(autouse=True)
def no_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list:
    monkeypatch.setenv("VISNET_CACHE_DIR", str(tmp_path / "cache"))
    started: list = []
    monkeypatch.setattr(vauto, "start_build", lambda *args: started.append(args))
    yield started
    assert started == [], "a short test job started a background build"


def test_the_resolver_gives_each_form() -> None:
    model = small_model()
    assert type(resolve_model(model).model) is visnet.ViSNet  # the resolver's own default: eager
    auto = resolve_model(model, accel="auto").model
    assert isinstance(auto, AutoViSNet) and isinstance(auto, AtomisticModel) and model_form(auto) == "eager"
    assert auto.eager_model is not model  # a private copy, as for every form
    assert isinstance(resolve_model(model, accel="compile").model, CompiledViSNet)
    assert isinstance(resolve_model(model, compile=True).model, CompiledViSNet)
    assert type(resolve_model(auto, accel="eager").model) is visnet.ViSNet  # an auto model handed on: its weights


def test_property_models_stay_eager_under_auto() -> None:
    prop = visnet.ViSNet(hidden_channels=16, num_layers=1, num_rbf=8, num_heads=2, cutoff=4.0, max_z=10,
                         output_head="scalar", output_key="gap").double()  # fmt: skip
    prop.metadata = {"units": {"gap": "eV", "length": "Å"}}
    assert type(resolve_model(prop, accel="auto").model) is visnet.ViSNet


def test_predict_announces_its_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    announced = []
    monkeypatch.setattr(AutoViSNet, "expect_calls", lambda self, calls: announced.append(calls))
    results = visnet.predict(["CCO", "CCN", "CCC"], model=small_model(), batch_size=2)
    assert len(results) == 3 and announced == [2]
    assert visnet.predict(["CCO"], model=small_model(), accel="eager")[0].properties["energy"] == pytest.approx(
        results[0].properties["energy"], rel=1e-12
    )


def test_md_announces_its_steps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from visnet.dynamics.runner import MDConfig, run_md

    announced = []
    monkeypatch.setattr(AutoViSNet, "expect_calls", lambda self, calls: announced.append(calls))
    config = MDConfig(structure="ethanol", model=small_model(), steps=3, equilibration_steps=2, output_dir=tmp_path,
                      progress=False, plots=False, max_force=1e6, min_distance=0.1)  # fmt: skip
    result = run_md(config)
    assert announced == [5] and result.form.startswith("eager")
    eager = run_md(MDConfig(**{**config.__dict__, "accel": "eager", "output_dir": tmp_path / "eager"}))
    assert eager.form == "eager"


def test_engines_take_accel() -> None:
    pytest.importorskip("torch_sim")
    from visnet.integrations.torchsim import ViSNetModel

    assert isinstance(load_engine_model(small_model()).model, AutoViSNet)
    assert type(load_engine_model(small_model(), accel="eager").model) is visnet.ViSNet
    assert isinstance(ViSNetModel(small_model()).model, AutoViSNet)
    assert type(ViSNetModel(small_model(), accel="eager").model) is visnet.ViSNet


def test_openmm_refuses_a_bad_accel_in_one_line() -> None:
    pytest.importorskip("openmmml")
    from visnet.integrations.openmm import ViSNetPotentialImpl

    assert ViSNetPotentialImpl("visnet", small_model(), accel="eager").accel == "eager"
    with pytest.raises(ValueError, match="accel must be one of auto, eager, compile, export"):
        ViSNetPotentialImpl("visnet", small_model(), accel="turbo")


def test_an_auto_model_computes_what_the_eager_model_does(ethanol) -> None:
    z, pos = ethanol
    eager = resolve_model(small_model()).model
    auto = resolve_model(small_model(), accel="auto").model
    for _ in range(3):
        torch.testing.assert_close(auto(z, pos)["forces"], eager(z, pos)["forces"], rtol=0, atol=0)
