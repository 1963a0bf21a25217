"""Model files: round trip, metadata, safety (weights_only) and clear errors."""

from __future__ import annotations

import datetime
import enum
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import visnet
from visnet import ViSNet, load_model, save_model

REFERENCE = Path(__file__).parent / "reference" / "regression_reference.json"
SMOOTH_REFERENCE = Path(__file__).parent / "reference" / "regression_reference_smooth_norm.json"


def deterministic_model(**kwargs) -> ViSNet:
    """A model whose weights do not depend on torch's RNG: every parameter is a fixed sinusoid."""
    model = ViSNet(hidden_channels=16, num_layers=2, num_heads=2, num_rbf=8, cutoff=4.0, lmax=2, **kwargs).double()
    with torch.no_grad():
        for k, p in enumerate(model.parameters()):
            idx = torch.arange(p.numel(), dtype=torch.float64)
            p.copy_((0.3 * torch.sin(0.37 * idx + k)).view_as(p))
    return model.eval()


SMALL = ViSNet(hidden_channels=8, num_layers=1, num_heads=2, num_rbf=4, cutoff=3.0, lmax=1)


def test_round_trip(tmp_path, ethanol):
    model = deterministic_model()
    path = save_model(model, tmp_path / "model.pt", units={"energy": "kcal/mol", "length": "Å"}, training_data="x")
    loaded = load_model(path)
    z, pos = ethanol
    out, again = model(z, pos), loaded(z, pos)
    assert loaded.dtype == torch.float64
    torch.testing.assert_close(again["energy"], out["energy"], rtol=0, atol=0)
    torch.testing.assert_close(again["forces"], out["forces"], rtol=0, atol=0)
    assert loaded.metadata["units"]["energy"] == "kcal/mol"
    assert loaded.metadata["cutoff"] == 4.0 and loaded.metadata["training_data"] == "x"
    assert load_model(path, dtype="float32").dtype == torch.float32


def test_saved_file_is_plain_data(tmp_path):
    path = save_model(deterministic_model(), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "visnet-model" and "visnet_version" in payload["metadata"]


@pytest.mark.parametrize(
    "norm_eps,reference_file",
    [(0.0, REFERENCE), (None, SMOOTH_REFERENCE)],
    ids=["exact-norm", "smooth-norm"],
)
def test_stored_reference_regression(ethanol, norm_eps, reference_file):
    """Energies/forces of a fixed-weight model on a fixed frame, stored once; guards the maths.

    The first file was stored before norms of learned vectors were smoothed (``vector_norm_eps=0``
    reproduces it); the second with the default smoothing radius. Both before ``cutoff_type``
    existed: they are the cosine envelope's."""
    model = deterministic_model(cutoff_type="cosine", **({} if norm_eps is None else {"vector_norm_eps": norm_eps}))
    z, pos = ethanol
    out = model(z, pos)
    reference = json.loads(reference_file.read_text())
    assert out["energy"].item() == pytest.approx(reference["energy"], rel=1e-10, abs=1e-10)
    torch.testing.assert_close(
        out["forces"], torch.tensor(reference["forces"], dtype=torch.float64), rtol=1e-9, atol=1e-10
    )


def test_truncated_file(tmp_path):
    path = save_model(deterministic_model(), tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupted, truncated"):
        load_model(path)


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pt"
    torch.save({"format": "visnet-model", "payload": Evil()}, path)
    with pytest.raises(ValueError, match="refused for safety"):
        load_model(path)
    assert not marker.exists()


def test_foreign_files(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="not a ViSNet model file"):
        load_model(other)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="no bundled model named 'nonexistent'"):
        load_model("nonexistent")


def test_checkpoint_from_another_model(tmp_path):
    path = save_model(deterministic_model(), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["hyperparameters"]["hidden_channels"] = 32
    torch.save(payload, path)
    with pytest.raises(ValueError, match="weights do not match"):
        load_model(path)


def test_metadata_paths_and_numpy_values_are_stored_as_plain_data(tmp_path):
    import numpy as np

    meta = {"source": tmp_path / "data.npz", "count": np.int64(3), "scale": np.float32(0.5), "ids": np.arange(3)}
    loaded = load_model(save_model(deterministic_model(), tmp_path / "m.pt", nested={"run": tmp_path}, **meta))
    assert loaded.metadata["source"] == str(tmp_path / "data.npz") and loaded.metadata["nested"]["run"] == str(tmp_path)
    assert loaded.metadata["count"] == 3 and type(loaded.metadata["count"]) is int
    assert loaded.metadata["scale"] == 0.5 and loaded.metadata["ids"] == [0, 1, 2]


def test_metadata_that_cannot_be_stored_is_refused_naming_the_key(tmp_path):
    import numpy as np

    with pytest.raises(ValueError, match=r"metadata 'extra.when': a value of type set cannot be stored"):
        save_model(deterministic_model(), tmp_path / "m.pt", extra={"when": {1, 2}})
    with pytest.raises(ValueError, match=r"metadata 'big': an array of 2000000 elements"):
        save_model(deterministic_model(), tmp_path / "m.pt", big=np.zeros(2_000_000, dtype=np.uint8))
    assert not (tmp_path / "m.pt").exists()


def test_meta_device_model_is_not_saved(tmp_path):
    with torch.device("meta"):
        model = ViSNet(hidden_channels=16, num_heads=2)
    with pytest.raises(ValueError, match="meta device"):
        save_model(model, tmp_path / "m.pt")


def _crafted(tmp_path, hyper=None, meta=None):
    path = save_model(deterministic_model(), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["hyperparameters"].update(hyper or {})
    payload["metadata"].update(meta or {})
    torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    ("hyper", "message"),
    [
        ({"max_z": -3}, r"max_z must be in \[2, 1000\], got -3"),
        ({"num_rbf": 0}, r"num_rbf must be in \[1, 1024\], got 0"),
        ({"num_heads": 0}, r"num_heads must be in \[1, 1024\], got 0"),
        ({"derivative": "no"}, "derivative must be true or false, got 'no'"),
        ({"hidden_channels": 16384}, r"hidden_channels must be in \[2, 4096\], got 16384"),
        ({"unknown_option": 1}, r"ViSNet.__init__\(\) got an unexpected keyword argument .unknown_option."),
    ],
)
def test_crafted_hyperparameters_are_refused_before_allocating(tmp_path, hyper, message):
    with pytest.raises(ValueError, match=f"invalid stored hyperparameters: {message}"):
        load_model(_crafted(tmp_path, hyper=hyper))


def test_hyperparameters_contradicting_the_metadata_are_refused(tmp_path):
    with pytest.raises(ValueError, match="stored hyperparameters say cutoff 4.0 Å but the metadata says 3.0"):
        load_model(_crafted(tmp_path, meta={"cutoff": 3.0}))


def test_more_weights_than_the_file_holds_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"weights do not match .* declare \d+ weights, the file holds \d+"):
        load_model(_crafted(tmp_path, hyper={"hidden_channels": 4096, "num_heads": 2}))


def test_large_metadata_tensor_and_oversized_contents_are_refused(tmp_path, monkeypatch):
    import visnet.io.model_files as checkpoint

    path = _crafted(tmp_path, meta={"blob": torch.zeros(2_000_000, dtype=torch.uint8)})
    with pytest.raises(ValueError, match="metadata 'blob' holds more than 1000000 elements"):
        load_model(path)
    monkeypatch.setattr(checkpoint, "MAX_FILE_BYTES", 1000)
    with pytest.raises(ValueError, match="more than a model file may"):
        load_model(path)


def test_version_comes_from_the_installed_distribution(tmp_path):
    import importlib.metadata

    payload = torch.load(save_model(deterministic_model(), tmp_path / "m.pt"), weights_only=True)
    assert payload["metadata"]["visnet_version"] == importlib.metadata.version("visnet")
    assert "mean" not in payload["hyperparameters"] and "std" not in payload["hyperparameters"]


# ---------------------------------------------- red-team round 3, item 4: saved means loadable
class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


# Values a user may put in metadata, paired with the plain value that must come back.
LOOK_ALIKES = [
    (np.float64(1.5), 1.5),
    (np.mean([1.0, 2.0]), 1.5),
    (np.float32(0.25), 0.25),
    (np.longdouble(2.5), 2.5),
    (np.int16(-3), -3),
    (np.bool_(True), True),
    (np.str_("eV"), "eV"),
    (Colour.RED, "red"),
    (Level.HIGH, 3),
    (np.datetime64("2024-05-06T07:08:09"), "2024-05-06T07:08:09"),
    (datetime.datetime(2024, 5, 6, 7, 8), "2024-05-06T07:08:00"),
    (Path("/data/x.npz"), "/data/x.npz"),
    ((1, np.int8(2)), [1, 2]),
    (np.array([1.5, 2.5]), [1.5, 2.5]),
    (np.array(["2024-01-01T00:00:00.000000001"], dtype="datetime64[ns]"), ["2024-01-01T00:00:00.000000001"]),
]


def _nested(draw_path: list[str], value):
    for key in reversed(draw_path):
        value = {np.str_(key): value}
    return value


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    case=st.sampled_from(LOOK_ALIKES),
    path=st.lists(st.sampled_from(["a", "b", "run"]), min_size=0, max_size=3),
    in_list=st.booleans(),
)
def test_every_storable_metadata_value_round_trips(tmp_path_factory, case, path, in_list):
    """Float/str/int subclasses, enums, datetimes and arrays at any depth are stored as the plain
    value: load_model reads back exactly it (and its exact built-in type)."""
    given_value, plain = case
    value = [given_value] if in_list else given_value
    target = tmp_path_factory.mktemp("meta") / "m.pt"
    loaded = load_model(save_model(SMALL, target, extra=_nested(path, value)))
    got = loaded.metadata["extra"]
    for key in path:
        got = got[key]
    expected = [plain] if in_list else plain
    assert got == expected and type(got) is type(expected)
    if isinstance(expected, list):
        assert [type(v) for v in got] == [type(v) for v in expected]


def test_units_with_numpy_strings_or_as_pairs_load(tmp_path):
    for units in ({"energy": np.str_("kcal/mol"), np.str_("length"): "Å"}, [("energy", "kcal/mol"), ("length", "Å")]):
        loaded = load_model(save_model(SMALL, tmp_path / "m.pt", units=units))
        assert loaded.metadata["units"] == {"energy": "kcal/mol", "length": "Å"}
        assert all(type(k) is str and type(v) is str for k, v in loaded.metadata["units"].items())


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"units": {"energy": 1.0}}, r"metadata 'units.energy': unit names are strings"),
        ({"units": "eV"}, r"metadata 'units': expected a dict"),
        ({"extra": {"run": {1: "x"}}}, r"metadata 'extra.run': keys must be strings, got 1"),
        ({"extra": [object()]}, r"metadata 'extra\[0\]': a value of type object cannot be stored"),
        ({"big": np.longdouble("1e4000")}, r"metadata 'big': .* beyond the float64 range"),
    ],
)
def test_metadata_load_model_could_not_read_is_refused_before_writing(tmp_path, metadata, message):
    with pytest.raises(ValueError, match=message):
        save_model(SMALL, tmp_path / "m.pt", **metadata)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_compiled_models_save_the_eager_model(tmp_path, ethanol):
    """compile_model and torch.compile wrappers save the same keys as the model itself; the file
    loads and gives the eager model's outputs exactly."""
    model = deterministic_model()
    plain = torch.load(save_model(model, tmp_path / "plain.pt"), weights_only=True)
    z, pos = ethanol
    for name, wrapped in (("visnet", visnet.compile_model(model, verbose=False)), ("torch", torch.compile(model))):
        path = save_model(wrapped, tmp_path / f"{name}.pt")
        assert torch.load(path, weights_only=True)["state_dict"].keys() == plain["state_dict"].keys()
        out, again = model(z, pos), load_model(path)(z, pos)
        torch.testing.assert_close(again["energy"], out["energy"], rtol=0, atol=0)


def test_modules_without_weights_of_a_visnet_are_refused(tmp_path):
    from visnet.accel.exported import ExportedViSNet

    exported = ExportedViSNet(None, {"dtype": "float64", "device": "cpu", "cutoff": 4.0}, "x.pt2")
    with pytest.raises(
        ValueError, match=r"exported package \(\.pt2\) holds compiled code, not weights; save the model"
    ):
        save_model(exported, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="expected a visnet.ViSNet, got a Linear"):
        save_model(torch.nn.Linear(2, 2), tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_is_not_a_model_file_name(tmp_path):
    (tmp_path / "existing").mkdir()
    for name in (f"{tmp_path / 'newdir'}/", str(tmp_path / "existing")):
        with pytest.raises(ValueError, match=r"is a folder; give a file name such as .*model\.pt"):
            save_model(SMALL, name)
    assert not (tmp_path / "newdir").exists() and list((tmp_path / "existing").iterdir()) == []
