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
    reproduces it); the second with the default smoothing radius."""
    model = deterministic_model(**({} if norm_eps is None else {"vector_norm_eps": norm_eps}))
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
