"""Model files: round trip, metadata, safety (weights_only) and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from visnet import ViSNet, load_model, save_model

REFERENCE = Path(__file__).parent / "data" / "regression_reference.json"
SMOOTH_REFERENCE = Path(__file__).parent / "data" / "regression_reference_smooth_norm.json"


def deterministic_model(**kwargs) -> ViSNet:
    """A model whose weights do not depend on torch's RNG: every parameter is a fixed sinusoid."""
    model = ViSNet(hidden_channels=16, num_layers=2, num_heads=2, num_rbf=8, cutoff=4.0, lmax=2, **kwargs).double()
    with torch.no_grad():
        for k, p in enumerate(model.parameters()):
            idx = torch.arange(p.numel(), dtype=torch.float64)
            p.copy_((0.3 * torch.sin(0.37 * idx + k)).view_as(p))
    return model.eval()


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

    with pytest.raises(ValueError, match=r"metadata 'extra.when': a set cannot be stored"):
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
    import visnet.checkpoint as checkpoint

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
