"""Bad inputs around exported packages (.pt2) and input paths (red-team round 3, items 1-3, 8, 14
for ``visnet export --device cuda``, and 16).

Fast (no export): the packages are zips holding real metadata and tiny shared libraries built with
the system C compiler whose constructor writes a marker file, so any ``dlopen`` of them shows.
The real exported package (loads without the flag, tampered copies refused) is in test_export.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch
from ase import Atoms
from helpers import small_model

import visnet
from visnet.accel import export as vexport
from visnet.accel.export import is_exported_file
from visnet.cli import main as visnet_main
from visnet.data import load_atoms_data
from visnet.io import package_safety
from visnet.io.package_safety import PackageError, UntrustedPackageError, record_package

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler for the test libraries")

EVIL = """
#include <stdio.h>
__attribute__((constructor)) static void evil(void) {{ FILE *f = fopen("{marker}", "w"); if (f) fclose(f); }}
{symbols}
"""
AOTI_SYMBOLS = "\n".join(f"void {name}(void) {{}}" for name in sorted(package_safety.REQUIRED_SYMBOLS))


def build_library(folder: Path, name: str, marker: Path, symbols: str = "") -> Path:
    """A shared library whose constructor creates ``marker`` when it is loaded."""
    source = folder / f"{name}.c"
    source.write_text(EVIL.format(marker=marker, symbols=symbols))
    library = folder / f"{name}.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    return library


def package(path: Path, library: bytes | None, **changes: object) -> Path:
    """A zip laid out like an exported package: real metadata and ``library`` as its wrapper .so."""
    meta = vexport.export_metadata(small_model())
    meta.update(changes)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/archive_format", "pt2")
        archive.writestr(f"model/extra/{vexport.METADATA_NAME}", json.dumps(meta))
        if library is not None:
            archive.writestr("model/data/aotinductor/model/x.wrapper.so", library)
    return path


@pytest.fixture(scope="module")
def libraries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("evil")
    marker = folder / "code-ran"
    plain = build_library(folder, "plain", marker)
    aoti = build_library(folder, "aoti", marker, AOTI_SYMBOLS)
    return {"marker": marker, "plain": plain.read_bytes(), "aoti": aoti.read_bytes()}


@pytest.fixture(autouse=True)
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private registry of trusted packages: the user's ~/.cache is never touched."""
    monkeypatch.setenv("VISNET_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "trusted-packages"


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# --------------------------------------------------------------------------- item 1: untrusted code


def test_untrusted_package_is_refused_by_every_entry_point_before_its_code_runs(
    libraries: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = libraries["marker"]
    evil = package(tmp_path / "evil.pt2", libraries["aoti"])
    risk = "not built on this machine.*runs as soon as it is loaded.*trust_package=True"
    with pytest.raises(UntrustedPackageError, match=risk):
        visnet.ViSNetCalculator(model=str(evil))
    with pytest.raises(UntrustedPackageError, match=risk):
        visnet.predict(Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]]), model=str(evil))
    with pytest.raises(UntrustedPackageError, match=risk):
        visnet.load_exported(evil)
    out = tmp_path / "md"
    assert visnet_main(["md", "O", "--model", str(evil), "--steps", "1", "--output-dir", str(out), "--no-plots"]) == 2
    assert "--trust-package" in one_line_error(capsys)
    assert visnet_main(["predict", "O", "--model", str(evil)]) == 2
    assert "not built on this machine" in one_line_error(capsys)
    assert not marker.exists()


def test_recorded_package_edited_afterwards_is_refused(libraries: dict, tmp_path: Path) -> None:
    """Item 8: editing the metadata (cutoff 4 -> 3) of a package built here changes its digest."""
    path = package(tmp_path / "built.pt2", libraries["aoti"])
    record_package(path)
    edited = package(tmp_path / "built.pt2", libraries["aoti"], cutoff=3.0)
    with pytest.raises(UntrustedPackageError, match="changed after it was built"):
        visnet.load_exported(edited)
    assert not libraries["marker"].exists()


def test_registry_entries_are_sha256_files(libraries: dict, tmp_path: Path, registry: Path) -> None:
    import hashlib

    path = package(tmp_path / "p.pt2", libraries["aoti"])
    digest = record_package(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert json.loads((registry / digest).read_text())["path"] == str(path.absolute())


# --------------------------------------------------------------------------- item 3: invalid libraries


@pytest.mark.parametrize(
    ("library", "message"),
    [
        ("plain", "not an AOTInductor model library .*lacks AOTInductorModelContainer"),
        ("truncated", "truncated or corrupted"),
        ("text", "not a shared library"),
        ("none", "no compiled library"),
    ],
)
def test_trusted_package_with_an_invalid_library_is_refused_before_dlopen(
    libraries: dict, tmp_path: Path, library: str, message: str
) -> None:
    data = {
        "plain": libraries["plain"],
        "truncated": libraries["aoti"][: len(libraries["aoti"]) // 2],
        "text": b"#!/bin/sh\necho hi\n",
        "none": None,
    }[library]
    path = package(tmp_path / "bad.pt2", data)
    with pytest.raises(PackageError, match=message):
        visnet.load_exported(path, trust_package=True)
    assert not libraries["marker"].exists()


def test_library_of_another_architecture_is_refused(libraries: dict, tmp_path: Path) -> None:
    data = bytearray(libraries["aoti"])
    data[18:20] = (40).to_bytes(2, "little")  # e_machine: 32-bit ARM
    with pytest.raises(PackageError, match="not a shared library for this machine"):
        visnet.load_exported(package(tmp_path / "arm.pt2", bytes(data)), trust_package=True)


# --------------------------------------------------------------------------- item 2: bounded reads


def test_metadata_bomb_is_refused_without_inflating_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(package_safety, "MAX_METADATA_BYTES", 1000)
    monkeypatch.setattr(vexport, "MAX_METADATA_BYTES", 1000)
    path = tmp_path / "bomb.pt2"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"model/extra/{vexport.METADATA_NAME}", " " * 10**6 + "{}")
    assert path.stat().st_size < 10**4
    with pytest.raises(PackageError, match=r"visnet_metadata.json takes 1000002 bytes, more than allowed \(1000\)"):
        visnet.load_exported(path, trust_package=True)


def test_member_whose_header_understates_its_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lying.pt2"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/extra/x", "y" * 100)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("model/extra/x")
        info.file_size = 10  # what a forged header would say
        with pytest.raises(PackageError, match="model/extra/x"):
            package_safety.read_member(archive, info, 50, str(path))


def test_contents_over_the_package_bound_are_refused(
    libraries: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(package_safety, "MAX_PACKAGE_BYTES", 4096)
    with pytest.raises(PackageError, match="more than"):
        visnet.load_exported(package(tmp_path / "big.pt2", libraries["aoti"]), trust_package=True)


def test_metadata_missing_what_the_loader_reads_is_refused(tmp_path: Path) -> None:
    path = package(tmp_path / "m.pt2", None, cutoff="far")
    with pytest.raises(vexport.ExportError, match="no valid 'cutoff'.*export the model again"):
        visnet.load_exported(path)


# --------------------------------------------------------------------------- item 16: what a file is


def test_package_is_recognised_by_content_not_by_name(tmp_path: Path) -> None:
    model_file = visnet.save_model(small_model(), tmp_path / "model.pt2")  # a model file named .pt2
    assert not is_exported_file(model_file)
    calc = visnet.ViSNetCalculator(model=str(model_file))  # loaded as the model file it is
    assert calc.model.cutoff == small_model().cutoff
    upper = package(tmp_path / "UPPER.PT2", None)
    assert is_exported_file(upper) and is_exported_file(tmp_path / "missing.PT2")
    renamed = package(tmp_path / "renamed.bin", None)
    assert is_exported_file(renamed)
    with pytest.raises(UntrustedPackageError):
        visnet.ViSNetCalculator(model=str(renamed))


def test_load_model_and_export_on_a_package_say_what_it_is(
    libraries: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = package(tmp_path / "x.pt2", libraries["aoti"])
    with pytest.raises(
        ValueError, match=r"is an exported package \(visnet export\), not a model file: .*load_exported"
    ):
        visnet.load_model(path)
    assert visnet_main(["export", str(path), str(tmp_path / "y.pt2")]) == 2
    assert "is already an exported package: visnet export needs a model file" in one_line_error(capsys)


def test_export_for_cuda_without_cuda_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert visnet_main(["export", "default", str(tmp_path / "x.pt2"), "--device", "cuda"]) == 2
    assert "no CUDA device" in one_line_error(capsys)
    assert not (tmp_path / "x.pt2").exists()


def test_folders_given_as_input_files_are_named_as_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    with pytest.raises(ValueError, match="is a folder, expected an exported package file"):
        visnet.load_exported(folder / "..")
    with pytest.raises(ValueError, match="data file .* is a folder, expected a file"):
        load_atoms_data(folder)
    assert visnet_main(["predict", "--input", str(folder)]) == 2
    assert "structure file" in one_line_error(capsys)
    assert visnet_main(["predict", "CCO", "--smiles-file", str(folder)]) == 2
    assert "SMILES file" in one_line_error(capsys)
    out = tmp_path / "md"
    assert visnet_main(["md", str(folder), "--steps", "1", "--output-dir", str(out), "--no-plots"]) == 2
    assert "is a folder, expected a file" in one_line_error(capsys)


# --------------------------------------------------------------------------- review: registry and export


def test_registry_others_can_write_vouches_for_nothing(libraries: dict, tmp_path: Path, registry: Path) -> None:
    """A cache folder shared with a group: its members could record digests, so a registry (or an
    entry) that others may write is not honoured, and nothing new is recorded in it."""
    path = package(tmp_path / "p.pt2", libraries["aoti"])
    digest = record_package(path)
    registry.chmod(0o775)
    with pytest.raises(UntrustedPackageError, match="not built on this machine"):
        visnet.load_exported(path)
    with pytest.raises(PackageError, match="not a private folder"):
        record_package(path)
    registry.chmod(0o700)
    (registry / digest).chmod(0o666)
    with pytest.raises(UntrustedPackageError, match="not built on this machine"):
        visnet.load_exported(path)
    assert not libraries["marker"].exists()


def test_bad_device_name_for_a_package_is_one_line(libraries: dict, tmp_path: Path) -> None:
    path = package(tmp_path / "p.pt2", libraries["aoti"])
    record_package(path)
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda'.*got 'gpu'"):
        visnet.load_exported(path, device="gpu")
    assert not libraries["marker"].exists()


@pytest.mark.slow
def test_export_keeps_the_package_when_trust_cannot_be_recorded(tmp_path: Path, registry: Path) -> None:
    """A cache that cannot hold the record (here: writable by the group) costs a warning, not the
    package just built; that package then loads only with trust_package=True."""
    registry.mkdir(parents=True)
    registry.chmod(0o775)
    target = tmp_path / "m.pt2"
    with pytest.warns(UserWarning, match="not recorded as built here"):
        visnet.export_model(small_model(), target)
    assert target.is_file()
    with pytest.raises(UntrustedPackageError):
        visnet.load_exported(target)
    assert visnet.load_exported(target, trust_package=True).cutoff == small_model().cutoff
