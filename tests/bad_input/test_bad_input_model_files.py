"""Bad-input matrix of model files, split files and checkpoints (red-team round 3, items 4, 6, 7).

* 4: whatever ``save_model`` writes ``load_model`` reads back (metadata of NumPy, enum, datetime,
  subclass types at any depth, ``units`` as pairs), or it refuses before writing, naming the key;
  compiled wrappers save the eager model; packages, other modules and folders are refused. The
  same holds for the other writers of model files (the export of a run's best checkpoint).
* 6: a stored split is refused for other data of the same size (a fingerprint of the contents).
* 7: ``visnet test/validate/predict --ckpt_path <file>`` refuses architecture options that
  contradict the checkpoint, exit code 2 and one line.

Float64 models: loaded outputs are compared exactly (the same weights, the same operations).
"""

from __future__ import annotations

import datetime
import enum
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, shared_file
from helpers import lightning_payload, small_model

import visnet
from visnet import load_model, save_model
from visnet.cli import main as visnet_main
from visnet.data.splits import data_fingerprint, load_or_make_splits, read_splits
from visnet.data.structures import AtomsData
from visnet.training.export import export_model
from visnet.training.module import ViSNetModule
from visnet.training.preflight import check_checkpoint_architecture

TINY = str(REPO / "configs" / "tiny.yaml")


class Method(enum.Enum):
    DFT = "dft"


class Level(enum.IntEnum):
    HIGH = 2


@pytest.fixture(scope="module")
def model() -> visnet.ViSNet:
    return small_model(seed=0)


# ------------------------------------------------------------------ item 4: metadata that loads
STORABLE = {
    "np.float64": (np.float64(0.1), 0.1),
    "np.mean": (np.mean([0.5, 1.5]), 1.0),
    "np.float16": (np.float16(0.5), 0.5),
    "np.longdouble": (np.longdouble(0.25), 0.25),
    "np.uint64": (np.uint64(7), 7),
    "np.bool_": (np.bool_(False), False),
    "np.str_": (np.str_("PBE"), "PBE"),
    "np.bytes_": (np.bytes_(b"x"), b"x"),
    "np.complex128": (np.complex128(1 + 2j), 1 + 2j),
    "enum": (Method.DFT, "dft"),
    "IntEnum": (Level.HIGH, 2),
    "np.datetime64": (np.datetime64("2024-02-03"), "2024-02-03"),
    "np.timedelta64": (np.timedelta64(5, "s"), "5 seconds"),
    "datetime": (datetime.datetime(2024, 2, 3, 4, 5, 6), "2024-02-03T04:05:06"),
    "date": (datetime.date(2024, 2, 3), "2024-02-03"),
    "Path": (Path("data/x.npz"), "data/x.npz"),
    "tuple": ((np.int32(1), "a"), [1, "a"]),
    "str array": (np.array(["C", "H"]), ["C", "H"]),
    "longdouble array": (np.array([0.5], dtype=np.longdouble), [0.5]),
    "datetime64 array": (np.array(["2024-01-01"], dtype="datetime64[D]"), ["2024-01-01"]),
    "2-d array": (np.eye(2, dtype=np.float32), [[1.0, 0.0], [0.0, 1.0]]),
}


WHERE = [
    (name, where)
    for name, (_, plain) in STORABLE.items()
    for where in ("top", "nested", "in a list", "in units")
    if where != "in units" or isinstance(plain, str)  # unit names are strings
]


@pytest.mark.parametrize(("name", "where"), WHERE, ids=[f"{n}-{w}" for n, w in WHERE])
def test_saved_metadata_loads_back_as_plain_values(tmp_path, model, name, where):
    value, plain = STORABLE[name]
    if where == "in units":
        metadata = {"units": {np.str_("energy"): "eV", "length": "Å", "note": value}}
    else:
        metadata = {"top": {"x": value}, "nested": {"a": {np.str_("b"): {"x": value}}}, "in a list": {"x": [value]}}
        metadata = {"extra": metadata[where]}
    loaded = load_model(save_model(model, tmp_path / "m.pt", **metadata)).metadata
    got = {
        "top": lambda: loaded["extra"]["x"],
        "nested": lambda: loaded["extra"]["a"]["b"]["x"],
        "in a list": lambda: loaded["extra"]["x"][0],
        "in units": lambda: loaded["units"]["note"],
    }[where]()
    assert got == plain and type(got) is type(plain)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"extra": {"a": {2: "x"}}}, r"metadata 'extra.a': keys must be strings, got 2"),
        ({"extra": {float("nan"): 1}}, r"metadata 'extra': keys must be strings, got nan"),
        ({"extra": {"a": [object()]}}, r"metadata 'extra.a\[0\]': a value of type object cannot be stored"),
        ({"extra": {1, 2}}, r"metadata 'extra': a value of type set cannot be stored"),
        ({"extra": np.array([1, object()], dtype=object)}, r"metadata 'extra\[1\]': a value of type object"),
        ({"extra": np.longdouble("1e4000")}, r"metadata 'extra': .* beyond the float64 range"),
        ({"units": {"energy": 1}}, r"metadata 'units.energy': unit names are strings"),
        ({"units": [("energy", "eV", "x")]}, r"metadata 'units': expected a dict"),
        ({"units": None}, r"metadata 'units': expected a dict"),
    ],
    ids=["int key", "nan key", "object", "set", "object array", "huge longdouble", "unit number", "triple", "None"],
)
def test_unstorable_metadata_is_refused_before_writing(tmp_path, model, metadata, message):
    with pytest.raises(ValueError, match=message):
        save_model(model, tmp_path / "m.pt", **metadata)
    assert list(tmp_path.iterdir()) == []


def test_object_arrays_of_plain_values_are_stored_element_by_element(tmp_path, model):
    extra = np.array([None, np.float64(0.5), "C"], dtype=object)
    loaded = load_model(save_model(model, tmp_path / "m.pt", extra=extra)).metadata
    assert loaded["extra"] == [None, 0.5, "C"] and type(loaded["extra"][1]) is float


@pytest.mark.parametrize(
    "wrap",
    [lambda m: visnet.compile_model(m, verbose=False), torch.compile],
    ids=["compile_model", "torch.compile"],
)
def test_compiled_wrappers_save_the_eager_weights(tmp_path, model, water, wrap):
    path = save_model(wrap(model), tmp_path / "m.pt")
    state = torch.load(path, weights_only=True)["state_dict"]
    assert state.keys() == model.state_dict().keys()
    loaded = load_model(path)
    torch.testing.assert_close(loaded(*water)["energy"], model(*water)["energy"], rtol=0, atol=0)


@pytest.fixture(scope="module")
def water() -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.tensor([8, 1, 1])
    pos = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]], dtype=torch.float64)
    return z, pos


def test_modules_that_are_not_a_visnet_are_refused(tmp_path, model):
    from visnet.accel.exported import ExportedViSNet

    cases = {
        "exported package": (
            ExportedViSNet(None, {"dtype": "float64", "device": "cpu", "cutoff": 4.0}, "x.pt2"),
            r"an exported package \(\.pt2\) holds compiled code, not weights",
        ),
        "Lightning module": (
            ViSNetModule(hidden_channels=8, num_heads=2),
            r"expected a visnet.ViSNet, got a ViSNetModule",
        ),
        "Sequential": (torch.nn.Sequential(model), r"expected a visnet.ViSNet, got a Sequential"),
    }
    for wrapped, message in cases.values():
        with pytest.raises(ValueError, match=message):
            save_model(wrapped, tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("form", ["trailing slash", "existing folder"])
def test_a_folder_is_refused_as_the_destination(tmp_path, model, form):
    target = f"{tmp_path / 'new'}/" if form == "trailing slash" else str(tmp_path)
    with pytest.raises(ValueError, match=r"is a folder; give a file name such as"):
        save_model(model, target)
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []


def test_run_export_with_numpy_metadata_loads(tmp_path, model):
    """Sibling writer: ``visnet fit``'s export of the best checkpoint (``export_model``)."""
    checkpoint = tmp_path / "best.ckpt"
    torch.save(lightning_payload(model), checkpoint)
    path = export_model(checkpoint, tmp_path / "model.pt", interrupted=np.bool_(True), epoch=np.int64(3))
    loaded = load_model(path).metadata
    assert loaded["interrupted"] is True and type(loaded["epoch"]) is int


def test_training_metadata_is_plain_in_checkpoints():
    """``--model.metadata`` from YAML (dates) or Python (NumPy) is stored plain in the checkpoint's
    hyperparameters, which Lightning and ``load_model`` read with weights_only=True."""
    module = ViSNetModule(hidden_channels=8, num_heads=2, metadata={"date": datetime.date(2024, 1, 2), "n": np.int8(1)})
    assert module.hparams.metadata == {"date": "2024-01-02", "n": 1}


# ------------------------------------------------------------------- item 6: splits and data
def _data(seed: int, source: str, frames: int = 20) -> AtomsData:
    rng = np.random.default_rng(seed)
    return AtomsData(
        z=np.tile([8, 1, 1], frames),
        pos=rng.normal(size=(3 * frames, 3)),
        ptr=np.arange(0, 3 * frames + 1, 3),
        y=rng.normal(size=frames),
        source=source,
    )


def test_splits_are_refused_for_other_data_of_the_same_size(tmp_path):
    first, other = _data(0, "first.npz"), _data(1, "other.npz")
    load_or_make_splits(tmp_path, 20, 10, 5, None, fingerprint=data_fingerprint(first), source=first.source)
    with pytest.raises(ValueError, match=r"made for other data: first.npz .* not other.npz .*--init"):
        load_or_make_splits(tmp_path, 20, 10, 5, None, fingerprint=data_fingerprint(other), source=other.source)
    with pytest.raises(ValueError, match=r"made for other data"):  # an explicit --data.splits file
        read_splits(tmp_path / "splits.npz", 20, fingerprint=data_fingerprint(other), source=other.source)
    with pytest.warns(UserWarning, match="making new splits for this fresh run"):
        load_or_make_splits(
            tmp_path, 20, 10, 5, None, fingerprint=data_fingerprint(other), source="o", replace_mismatched=True
        )
    assert str(np.load(tmp_path / "splits.npz")["data_fingerprint"]) == data_fingerprint(other)


def test_the_same_data_from_another_path_or_an_old_split_file_is_accepted(tmp_path):
    data = _data(0, "a.npz")
    load_or_make_splits(tmp_path, 20, 10, 5, None, fingerprint=data_fingerprint(data), source="a.npz")
    moved = _data(0, "moved/a.npz")
    assert data_fingerprint(moved) == data_fingerprint(data)
    load_or_make_splits(tmp_path, 20, 10, 5, None, fingerprint=data_fingerprint(moved), source="moved/a.npz")
    old = tmp_path / "old"
    load_or_make_splits(old, 20, 10, 5, None)  # written before fingerprints were recorded
    load_or_make_splits(old, 20, 10, 5, None, fingerprint=data_fingerprint(_data(1, "b.npz")), source="b.npz")


@pytest.mark.parametrize("change", ["pos", "y", "units", "z"])
def test_fingerprint_sees_every_trained_quantity(change):
    data = _data(0, "a.npz")
    edited = {
        "pos": lambda d: AtomsData(**{**d.__dict__, "pos": d.pos + 1e-12}),
        "y": lambda d: AtomsData(**{**d.__dict__, "y": d.y[::-1].copy()}),
        "units": lambda d: AtomsData(**{**d.__dict__, "units": {"energy": "kcal/mol", "length": "Å"}}),
        "z": lambda d: AtomsData(**{**d.__dict__, "z": np.tile([8, 1, 9], 20)}),
    }[change](data)
    assert data_fingerprint(edited) != data_fingerprint(data)


# --------------------------------------------------- item 7: evaluating a checkpoint, other options
def test_architecture_options_are_compared_only_when_given():
    stored = {"hyper_parameters": {"model_hparams": {"hidden_channels": 16, "cutoff": 4.0, "mean": 1.0}}}
    check_checkpoint_architecture("test", "x.ckpt", stored, {})  # nothing given: the checkpoint's
    check_checkpoint_architecture("test", "x.ckpt", stored, {"hidden_channels": 16, "mean": None, "lr": 0.1})
    check_checkpoint_architecture("test", "x.ckpt", stored, {"output_head": None})  # None: from the target
    with pytest.raises(ValueError, match=r"cannot test: the checkpoint x.ckpt .* \(cutoff 4.0 → 3.0\); .*drop these"):
        check_checkpoint_architecture("test", "x.ckpt", stored, {"cutoff": 3.0})
    with pytest.raises(ValueError, match=r"\(cutoff 4.0 → 5.0\)"):  # the parser's default, given explicitly
        check_checkpoint_architecture("test", "x.ckpt", stored, {"cutoff": 5.0})
    with pytest.raises(ValueError, match=r"cutoff_type 'cosine' → 'polynomial'"):  # old files: cosine
        check_checkpoint_architecture("validate", "x.ckpt", stored, {"cutoff_type": "polynomial"})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    data = str(shared_file("rmd17", "rmd17_ethanol_train1000.npz"))
    args = ["--config", TINY, "--data.path", data, "--trainer.default_root_dir", str(run)]
    assert visnet_main(["fit", *args, "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "1"]) == 0
    return run


@pytest.mark.parametrize("subcommand", ["test", "validate", "predict"])
def test_cli_refuses_options_the_checkpoint_would_override(run_dir, subcommand, capsys):
    data = str(shared_file("rmd17", "rmd17_ethanol_train1000.npz"))
    args = ["--config", TINY, "--data.path", data, "--trainer.default_root_dir", str(run_dir)]
    best = str(run_dir / "checkpoints" / "best.ckpt")
    code = visnet_main([subcommand, *args, "--ckpt_path", best, "--model.hidden_channels", "24"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith(f"visnet: error: cannot {subcommand}") and "hidden_channels 16 → 24" in err[-1]


@pytest.mark.parametrize(
    ("units", "message"),
    [
        ({"energy": "furlong", "length": "Å"}, "unknown energy unit 'furlong'"),
        ({"energy": "eV", "length": "parsec"}, "parsec"),
        ({"energy": "eV", "lenght": "nm"}, "did you mean 'length'"),
        ({"enrgy": "kcal/mol"}, "did you mean 'energy'"),
    ],
)
def test_save_model_refuses_units_no_reader_accepts(tmp_path: Path, units: dict, message: str) -> None:
    """A unit the calculator would refuse, or a misspelled quantity whose unit would be dropped
    (lengths then taken as Å), is refused before anything is written (red-team round 3, review)."""
    target = tmp_path / "model.pt"
    with pytest.raises(ValueError, match=message):
        save_model(small_model(), target, units=units)
    assert not target.exists()
