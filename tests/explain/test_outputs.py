"""Files of an explanation: CSV, depictions, heat map, uncertainty and attention pictures, and the
3D page in headless Chromium (no console message, status "drawn", a screenshot that is not blank)."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from ase.build import molecule
from PIL import Image

import visnet
from visnet.explain import explain
from visnet.explain.outputs import write_explanation

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _image(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=float)


def _not_blank(pixels: np.ndarray) -> bool:
    """More than a background: many distinct colours and a spread of brightness."""
    distinct = len(np.unique(pixels.reshape(-1, 3).astype(int), axis=0))
    return distinct > 50 and pixels.std() > 10


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[visnet.explain.Explanation, Path]:
    folder = tmp_path_factory.mktemp("ethanol")
    e = explain(molecule("CH3CH2OH"), output_dir=folder)
    return e, folder


def test_csv_holds_every_atom_and_sums_to_the_total(written) -> None:
    e, folder = written
    with open(folder / "per_atom.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["frame", "index", "element", "quantity", "value", "unit"]
    energy = [r for r in rows if r["quantity"] == "energy"]
    assert [r["element"] for r in energy] == e.symbols and {r["unit"] for r in energy} == {"eV"}
    assert sum(float(r["value"]) for r in energy) == pytest.approx(e.totals[0], abs=1e-8)
    assert {r["quantity"] for r in rows} == {"energy", "energy_relative_to_free_atoms"}


def test_depictions_are_pictures_with_a_colour_bar(written) -> None:
    _, folder = written
    pixels = _image(folder / "depiction.png")
    assert _not_blank(pixels)
    bar = pixels[60:-60, -120:-90]  # the colour bar strip right of the molecule
    assert len(np.unique(bar.reshape(-1, 3).astype(int), axis=0)) > 20
    for name in ("depiction.svg", "attention.svg"):
        assert ET.parse(folder / name).getroot().tag.endswith("svg")
    assert _not_blank(_image(folder / "attention.png"))
    with open(folder / "attention.csv", newline="", encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == written[0].attention.weights[..., 0].size


def test_trajectory_gets_a_heat_map_and_committee_an_uncertainty_picture(tmp_path: Path) -> None:
    base = molecule("CH4")
    frames = [base.copy() for _ in range(4)]
    for k, atoms in enumerate(frames):
        atoms.positions[1] *= 1 + 0.03 * k
    other = visnet.load_model("default", dtype="float64")
    for p in other.output_model.parameters():
        p.data.mul_(1.1)
    explain(frames, model=["default", other], output_dir=tmp_path, attention=False)
    assert _not_blank(_image(tmp_path / "heatmap.png"))
    assert _not_blank(_image(tmp_path / "uncertainty.png"))
    assert not (tmp_path / "attention.png").exists()


def test_output_folder_that_is_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    e = explain(molecule("CH4"), attention=False)
    with pytest.raises(ValueError, match="is a file, not a folder"):
        write_explanation(e, blocker)


def test_page_needs_no_network(written) -> None:
    text = (written[1] / "page.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)")
def test_page_draws_in_headless_chromium(written, tmp_path: Path) -> None:
    url = (written[1] / "page.html").as_uri()
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    run = subprocess.run(
        [*common, "--enable-logging=stderr", "--v=0", "--window-size=1000,800", f"--screenshot={shot}", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console  # the page logs nothing: no error, no failed script
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert 'data-status="drawn"' in dom  # the script ran to its end
    pixels = _image(shot)
    assert _not_blank(pixels[150:650, 20:650])  # the 3D canvas itself, not just the text around it
