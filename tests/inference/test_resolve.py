"""The one model resolver: every spec kind resolves, committees and bundles expand once, bad specs
give one line, and every entry point (calculator, predict, MD, evaluate, engines) goes through it."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch
from helpers import small_model, water_molecule

import visnet
from visnet import ViSNet, save_model
from visnet.inference import committee, resolve
from visnet.inference.calculator import ViSNetCalculator
from visnet.inference.resolve import ResolvedModel, prepare_model, resolve_model, resolve_models
from visnet.integrations import engine_model
from visnet.io.bundles import write_bundle

CALCULATOR = "the calculator (and MD)"


@pytest.fixture(scope="module")
def model() -> ViSNet:
    return small_model()


@pytest.fixture
def model_file(model: ViSNet, tmp_path: Path) -> Path:
    return save_model(model, tmp_path / "model.pt")


@pytest.fixture
def run_folder(model: ViSNet, tmp_path: Path) -> Path:
    """An ensemble run folder: member_0/model.pt and member_1/model.pt (different weights)."""
    run = tmp_path / "run"
    for k in range(2):
        (run / f"member_{k}").mkdir(parents=True)
        save_model(small_model(seed=k), run / f"member_{k}" / "model.pt")
    return run


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


# --------------------------------------------------------------------------- each spec kind


def test_default_resolves_to_the_bundled_energy_model() -> None:
    (default,) = resolve_models("default", device="cpu", dtype="float32")
    assert isinstance(default, ResolvedModel)
    assert default.info.label == "default" and default.info.is_energy_model
    assert (default.device, default.dtype) == (torch.device("cpu"), torch.float32)
    assert default.model.dtype == torch.float32 and not default.model.training


def test_file_resolves_to_a_private_frozen_copy(model: ViSNet, model_file: Path) -> None:
    resolved = resolve_model(model_file, device="cpu")
    assert resolved.info.label == str(model_file) and resolved.dtype == torch.float64  # None: as saved
    assert not any(p.requires_grad for p in resolved.model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(resolved.model.parameters(), model.parameters()))


def test_module_is_copied_not_changed(model: ViSNet) -> None:
    resolved = resolve_model(model, device="cpu", dtype="float32")
    assert resolved.model is not model and resolved.info.label == "ViSNet"
    assert model.dtype == torch.float64 and next(model.parameters()).requires_grad


def test_run_folder_is_a_committee_of_its_members(run_folder: Path) -> None:
    members = resolve_models(run_folder, device="cpu")
    expected = [str(run_folder / f"member_{k}" / "model.pt") for k in range(2)]
    assert [m.info.label for m in members] == expected


def test_plain_run_folder_is_its_one_model(model_file: Path) -> None:
    assert resolve_model(model_file.parent, device="cpu").info.label == str(model_file)


def test_list_is_flattened_in_order(model: ViSNet, model_file: Path, run_folder: Path) -> None:
    labels = [r.info.label for r in resolve_models([model, [model_file, run_folder]], device="cpu")]
    assert labels == ["ViSNet", str(model_file), *(str(run_folder / f"member_{k}" / "model.pt") for k in range(2))]


def test_bundle_name_expands_to_one_model_per_property() -> None:
    members = resolve_models("qm9", device="cpu")
    labels = [m.info.label for m in members]
    assert len(labels) > 1 and all(label.startswith("qm9:") for label in labels)
    assert "qm9:gap" in labels and all(m.entry.get("property") for m in members)


def test_bundle_manifest_path_labels_its_members(model: ViSNet, tmp_path: Path) -> None:
    save_model(model, tmp_path / "e.pt")
    manifest = write_bundle(tmp_path / "mine.json", "mine", [{"property": "energy", "file": "e.pt", "unit": "eV"}])
    (member,) = resolve_models(manifest, device="cpu")
    assert member.info.label == "mine:energy" and member.entry["unit"] == "eV"


def test_prepare_model_is_the_resolver_for_one_model(model_file: Path) -> None:
    module, info = prepare_model(model_file, torch.device("cpu"), torch.float32)
    assert module.dtype == torch.float32 and info.label == str(model_file)


# --------------------------------------------------------------------------- bad specs: one line


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        resolve_models(tmp_path / "missing.pt", device="cpu")
    assert "missing.pt" in one_line(err)


def test_empty_list_is_one_line() -> None:
    with pytest.raises(ValueError, match="the list of models is empty") as err:
        resolve_models([], device="cpu")
    one_line(err)


def test_empty_run_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    with pytest.raises(ValueError, match="holds neither model.pt nor member_k/model.pt") as err:
        resolve_models(tmp_path / "run", device="cpu")
    one_line(err)


def test_non_energy_model_is_refused_for_a_purpose() -> None:
    with pytest.raises(ValueError, match=r"qm9_gap: the calculator \(and MD\) needs an energy model.*'gap'") as err:
        resolve_models("qm9_gap", device="cpu", purpose=CALCULATOR)
    one_line(err)
    assert resolve_model("qm9_gap", device="cpu").info.output_key == "gap"  # without a purpose: fine


def test_committee_where_one_model_is_named_is_one_line(run_folder: Path) -> None:
    with pytest.raises(ValueError, match=r"names 2 models .*; give one model file") as err:
        resolve_model(run_folder, device="cpu")
    one_line(err)


def test_spec_of_another_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"model must be a ViSNet module, .*; got int$"):
        resolve_models(3, device="cpu")


def test_bad_device_and_dtype_fail_before_loading(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="device must be"):
        resolve_models(tmp_path / "missing.pt", device="gpu")
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        resolve_models(tmp_path / "missing.pt", device="cpu", dtype="float16")


# --------------------------------------------------------------------------- the entry points


class Reached(Exception):
    """Raised by the spied resolver: the entry point got there."""


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record every spec the resolver expands and stop there."""
    seen: list[object] = []

    def stop(spec: object) -> list[object]:
        seen.append(spec)
        raise Reached

    monkeypatch.setattr(resolve, "_entries", stop)
    return seen


def entry_points(tmp_path: Path) -> dict[str, object]:
    """Each entry point, called with the model spec ``tmp_path / "x.pt"``."""
    spec = tmp_path / "x.pt"

    def evaluate() -> None:
        from visnet.training.evaluate import evaluate as run_evaluate

        options = dict(model=spec, data="d.npz", split="all", run_dir=None, out=tmp_path / "out")
        run_evaluate(types.SimpleNamespace(**options, device="cpu", trust_package=False))

    def md() -> None:
        from visnet.dynamics.runner import MDConfig, prepare_system

        prepare_system(MDConfig(structure="ethanol", model=spec, device="cpu", output_dir=tmp_path, progress=False))

    return {
        "calculator": lambda: ViSNetCalculator(spec, device="cpu"),
        "predict": lambda: visnet.predict(water_molecule(), model=spec, device="cpu"),
        "md": md,
        "evaluate": evaluate,
    }


@pytest.mark.parametrize("entry", ["calculator", "predict", "md", "evaluate"])
def test_entry_point_goes_through_the_resolver(spy: list[object], tmp_path: Path, entry: str) -> None:
    with pytest.raises(Reached):
        entry_points(tmp_path)[entry]()
    assert spy == [tmp_path / "x.pt"]


def test_torchsim_goes_through_the_resolver_with_trust_package(monkeypatch: pytest.MonkeyPatch, model: ViSNet) -> None:
    pytest.importorskip("torch_sim")
    from visnet.integrations import torchsim

    calls = spy_resolve_model(monkeypatch)
    torchsim.ViSNetModel(model, device="cpu", trust_package=True)
    assert calls == [
        {"device": "cpu", "dtype": "float64", "trust_package": True, "purpose": "an MD engine", "accel": "auto"}
    ]


def test_openmm_goes_through_the_resolver_with_trust_package(monkeypatch: pytest.MonkeyPatch, model: ViSNet) -> None:
    openmmml = pytest.importorskip("openmmml")
    from openmm import app

    calls = spy_resolve_model(monkeypatch)
    topology = app.Topology()
    residue = topology.addResidue("W", topology.addChain())
    for symbol in "OHH":
        topology.addAtom(symbol, app.Element.getBySymbol(symbol), residue)
    openmmml.MLPotential("visnet", model=model, trust_package=True).createSystem(topology, device="cpu")
    assert calls == [
        {"device": "cpu", "dtype": "float64", "trust_package": True, "purpose": "an MD engine", "accel": "auto"}
    ]


def spy_resolve_model(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """Record the options the engine adapters pass to ``resolve_model`` (then resolve for real)."""
    calls: list[dict[str, object]] = []

    def recorded(spec: object, **options: object) -> ResolvedModel:
        calls.append(options)
        return resolve_model(spec, **options)

    monkeypatch.setattr(engine_model, "resolve_model", recorded)
    return calls


def test_committee_expands_once_through_calculator_and_md(
    monkeypatch: pytest.MonkeyPatch, run_folder: Path, tmp_path: Path
) -> None:
    from visnet.dynamics.runner import MDConfig, prepare_system

    expanded: list[Path] = []
    members = committee.committee_members

    def counted(folder: Path) -> list[Path]:
        expanded.append(folder)
        return members(folder)

    monkeypatch.setattr(committee, "committee_members", counted)
    assert len(ViSNetCalculator(run_folder, device="cpu").members) == 2
    assert expanded == [run_folder]
    config = MDConfig(structure="ethanol", model=run_folder, device="cpu", output_dir=tmp_path, progress=False)
    _, calc = prepare_system(config)
    assert len(calc.members) == 2 and expanded == [run_folder, run_folder]
