"""The fast-path cache (``visnet.accel.cache``) and ``accel="auto"`` (``visnet.accel.auto``).

The default tests replace the exporter with one that writes a few bytes (and, for ``AutoViSNet``,
the loader with one that returns a copy of the eager model), so the cache's logic — keys,
manifests, locking, damaged entries, eviction, faults, the switch — runs in milliseconds. The
``slow`` tests at the end export for real (a background build process, ~1–2 min per package).
"""

from __future__ import annotations

import copy
import errno
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import small_model

import visnet
from visnet.accel import auto as vauto
from visnet.accel.auto import AutoPolicy, AutoViSNet, FastPathWarning
from visnet.accel.build import start_build
from visnet.accel.cache import FastPathCache, cache_key, content_hash
from visnet.io.model_files import load_model, save_model

EAGER_POLICY = AutoPolicy(load_seconds=0.0, build_seconds=0.0, poll_seconds=0.0)  # decide at the 2nd call


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache (and trusted-package registry), never ~/.cache."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("VISNET_CACHE_DIR", str(folder))
    return folder


def fake_export(model_file: Path, package: Path, dtype: torch.dtype, device: torch.device) -> None:
    """Stands in for an export: a file whose bytes name the model, dtype and device."""
    package.write_bytes(f"{load_model(model_file).hparams}|{dtype}|{device}".encode() * 100)


def model_file(tmp_path: Path, model: torch.nn.Module | None = None) -> Path:
    return save_model(model or small_model(), tmp_path / "model.pt")


def ethanol_inputs(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.tensor([6, 6, 8, 1, 1, 1, 1, 1, 1])
    pos = torch.tensor(
        [[0.0, 0.0, 0.0], [1.52, 0.0, 0.0], [2.0, 1.3, 0.0], [-0.4, 1.0, 0.0], [-0.4, -0.5, 0.9],
         [-0.4, -0.5, -0.9], [1.9, -0.5, 0.9], [1.9, -0.5, -0.9], [2.9, 1.3, 0.3]],
        dtype=dtype,
    )  # fmt: skip
    return z, pos


# --------------------------------------------------------------------------- keys


def test_content_hash_is_the_same_for_a_model_and_its_file_and_changes_with_any_weight(tmp_path: Path) -> None:
    model = small_model()
    assert content_hash(model) == content_hash(load_model(model_file(tmp_path, model)))
    edited = copy.deepcopy(model)
    with torch.no_grad():
        next(edited.parameters()).view(-1)[0] += 1e-12
    assert content_hash(edited) != content_hash(model)
    edited.metadata = {"units": {"energy": "kcal/mol", "length": "Å"}}
    assert content_hash(edited) != content_hash(model)


def test_the_key_changes_with_dtype_device_torch_version_and_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    model = small_model()
    key = cache_key(model)
    assert key.dtype == "float64" and key.device == "cpu" and key.torch == torch.__version__
    assert cache_key(model.float()).digest != key.digest
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    assert cache_key(model.double()).digest != key.digest
    monkeypatch.undo()
    monkeypatch.setattr(vauto.cache_key.__globals__["platform"], "machine", lambda: "riscv64")
    assert cache_key(model.double()).digest != key.digest


# --------------------------------------------------------------------------- building and reading


def test_a_build_installs_a_complete_entry_with_its_manifest(tmp_path: Path, cache_dir: Path) -> None:
    cache, model = FastPathCache(), small_model()
    key = cache_key(model)
    assert cache.lookup(key) is None
    assert cache.build(key, model_file(tmp_path, model), fake_export, label="small").status == "built"
    package = cache.lookup(key)
    assert package == cache_dir / "packages" / key.digest / "package.pt2"
    manifest = json.loads((package.parent / "manifest.json").read_text())
    assert manifest["key"]["content"] == content_hash(model) and manifest["bytes"] == package.stat().st_size
    assert cache.build(key, model_file(tmp_path, model), fake_export).status == "exists"
    assert [e.label for e in cache.entries()] == ["small"]
    assert not list(cache.staging.iterdir())  # nothing half-written left behind


def test_a_damaged_package_is_removed_on_lookup_and_rebuilt(tmp_path: Path) -> None:
    cache, model = FastPathCache(), small_model()
    key = cache_key(model)
    cache.build(key, model_file(tmp_path, model), fake_export)
    package = cache.lookup(key)
    package.write_bytes(package.read_bytes()[:-10] + b"0123456789")  # same size, other bytes
    assert cache.is_damaged(key)
    assert cache.lookup(key) is None and not package.parent.exists()
    assert cache.build(key, model_file(tmp_path, model), fake_export).status == "built"
    assert cache.lookup(key) is not None


def test_an_entry_whose_manifest_names_another_torch_is_not_used(tmp_path: Path) -> None:
    cache, model = FastPathCache(), small_model()
    key = cache_key(model)
    cache.build(key, model_file(tmp_path, model), fake_export)
    manifest_path = cache.entry_dir(key) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["key"]["torch"] = "1.0.0"  # copied in from another installation
    manifest_path.write_text(json.dumps(manifest))
    assert cache.lookup(key) is None and not cache.entry_dir(key).exists()


def test_a_full_disk_fails_the_build_cleanly(tmp_path: Path) -> None:
    def full_disk(model_file: Path, package: Path, dtype: torch.dtype, device: torch.device) -> None:
        package.write_bytes(b"half a package")
        raise OSError(errno.ENOSPC, "No space left on device")

    cache, model = FastPathCache(), small_model()
    key = cache_key(model)
    outcome = cache.build(key, model_file(tmp_path, model), full_disk)
    assert outcome.status == "failed" and "No space left" in outcome.reason
    assert cache.lookup(key) is None and not cache.entry_dir(key).exists()
    assert not list(cache.staging.iterdir()) and not cache.building(key)
    assert "No space left" in cache.failure(key)  # not retried by every run
    assert cache.build(key, model_file(tmp_path, model), fake_export).status == "built"  # space again
    assert cache.failure(key) is None


def test_an_unwritable_cache_folder_fails_the_build_with_its_reason(tmp_path: Path, cache_dir: Path) -> None:
    cache_dir.mkdir(parents=True)
    (cache_dir / "packages").write_text("a file where the folder should be")
    cache, model = FastPathCache(), small_model()
    assert "not writable" in cache.writable()
    outcome = cache.build(cache_key(model), model_file(tmp_path, model), fake_export)
    assert outcome.status == "failed" and "not writable" in outcome.reason
    assert cache.entries() == [] and cache.lookup(cache_key(model)) is None


def hold_lock(lock: Path) -> subprocess.Popen:
    """Another process holding ``lock``'s flock (as a build in progress does)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    code = "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); print('x', flush=True); time.sleep(60)"
    process = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "x\n"
    return process


def test_a_second_build_of_a_key_being_built_waits_and_a_killed_build_leaves_no_lock(tmp_path: Path) -> None:
    cache, model = FastPathCache(), small_model()
    key = cache_key(model)
    other = hold_lock(cache.lock_path(key))
    try:
        assert cache.building(key)
        assert cache.build(key, model_file(tmp_path, model), fake_export).status == "busy"
        dead_stage = cache.staging / f"{key.digest}.{other.pid}.x"  # its half-written staging folder
        dead_stage.mkdir(parents=True)
        (dead_stage / "package.pt2").write_bytes(b"half")
    finally:
        other.kill()
        other.wait()
    assert not cache.building(key)  # the kernel released the killed builder's lock
    assert cache.build(key, model_file(tmp_path, model), fake_export).status == "built"
    assert not dead_stage.exists()


def test_two_builds_at_once_one_builds_the_other_is_told(tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()

    def slow_export(model_file: Path, package: Path, dtype: torch.dtype, device: torch.device) -> None:
        started.set()
        release.wait(10)
        fake_export(model_file, package, dtype, device)

    cache, model = FastPathCache(), small_model()
    key, file = cache_key(model), model_file(tmp_path, model)
    outcomes = []
    first = threading.Thread(target=lambda: outcomes.append(cache.build(key, file, slow_export)))
    first.start()
    assert started.wait(10)
    assert FastPathCache().build(key, file, fake_export).status == "busy"
    release.set()
    first.join(10)
    assert [o.status for o in outcomes] == ["built"] and cache.lookup(key) is not None


def test_two_processes_building_one_key_build_it_once(tmp_path: Path, cache_dir: Path) -> None:
    file = model_file(tmp_path)
    code = f"""
import sys, time
from pathlib import Path
from visnet.accel.cache import FastPathCache, cache_key
from visnet.io.model_files import load_model
def export(model_file, package, dtype, device):
    time.sleep(3)
    package.write_bytes(b"x" * 1000)
model = load_model({str(file)!r})
print(FastPathCache().build(cache_key(model), Path({str(file)!r}), export).status)
"""
    env = dict(os.environ, VISNET_CACHE_DIR=str(cache_dir), OMP_NUM_THREADS="1")
    runs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    statuses = sorted(run.communicate(timeout=120)[0].strip() for run in runs)
    assert statuses in (["built", "busy"], ["built", "exists"]), statuses
    assert len(FastPathCache().entries()) == 1


def test_the_background_build_process_records_why_it_failed(tmp_path: Path) -> None:
    """``python -m visnet.accel.build`` in its own process: a model export refuses (a property
    model, refused before any tracing) exits 1 and leaves its reason in the cache."""
    property_model = visnet.ViSNet(
        hidden_channels=16, num_layers=1, num_rbf=8, num_heads=2, cutoff=4.0, max_z=10, output_head="scalar",
        output_key="gap",
    ).double()  # fmt: skip
    property_model.metadata = {"units": {"gap": "eV", "length": "Å"}}
    key = cache_key(property_model)
    process = start_build(FastPathCache(), key, property_model, "gap model")
    assert process.wait(timeout=300) == 1
    assert "only energy models" in FastPathCache().failure(key)
    assert not list(FastPathCache().staging.iterdir())  # its job folder (model file) removed


def test_least_recently_used_entries_are_evicted_past_the_bound(tmp_path: Path) -> None:
    cache = FastPathCache()
    keys = []
    for seed in range(3):
        model = small_model(seed)
        keys.append(cache_key(model))
        cache.build(keys[-1], model_file(tmp_path, model), fake_export)
        time.sleep(0.02)
    os.utime(cache.entry_dir(keys[0]) / "manifest.json", (time.time() + 10, time.time() + 10))  # used last
    size = cache.entries()[0].bytes
    assert cache.evict(max_bytes=2 * size) == [keys[1].digest]
    assert cache.lookup(keys[0]) is not None and cache.lookup(keys[2]) is not None


def test_clear_removes_every_entry(tmp_path: Path) -> None:
    cache, model = FastPathCache(), small_model()
    cache.build(cache_key(model), model_file(tmp_path, model), fake_export)
    assert cache.clear() == 1 and cache.entries() == []


# --------------------------------------------------------------------------- accel="auto"


class FakeExported(torch.nn.Module):
    """What the fake loader returns: the eager model's call under another name."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)


class ThreadLauncher:
    """Builds with ``fake_export`` in a thread (instead of a background process); records its keys."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.keys, self.gate = [], gate

    def __call__(self, cache: FastPathCache, key, model: torch.nn.Module, label: str):
        self.keys.append(key)
        file = save_model(model, cache.root / f"job-{len(self.keys)}.pt")
        gate = self.gate

        def export(model_file: Path, package: Path, dtype: torch.dtype, device: torch.device) -> None:
            if gate is not None:
                gate.wait(10)
            fake_export(model_file, package, dtype, device)

        thread = threading.Thread(target=cache.build, args=(key, file, export))
        thread.start()
        return type("Handle", (), {"poll": lambda self: None if thread.is_alive() else 0})()


def auto_model(launcher=None, policy: AutoPolicy = EAGER_POLICY, model: torch.nn.Module | None = None) -> AutoViSNet:
    model = (model or small_model()).eval().requires_grad_(False)
    return AutoViSNet(
        model, "small", policy=policy, launcher=launcher or ThreadLauncher(), loader=lambda p, d, t: FakeExported(model)
    )


def call(model: torch.nn.Module, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    return model(*ethanol_inputs(dtype))


@pytest.fixture
def no_background_builds(monkeypatch: pytest.MonkeyPatch) -> list:
    started = []
    monkeypatch.setattr(vauto, "start_build", lambda *args: started.append(args))
    return started


def test_the_calculator_runs_auto_by_default_and_a_few_calls_build_nothing(
    no_background_builds: list, cache_dir: Path
) -> None:
    from ase.build import molecule

    calc = visnet.ViSNetCalculator(model=small_model())
    assert isinstance(calc.model, AutoViSNet)
    atoms = molecule("CH3CH2OH")
    atoms.calc = calc
    for _ in range(20):
        atoms.positions[0, 0] += 0.01
        atoms.get_forces()
    assert no_background_builds == [] and calc.model.state == "eager" and not (cache_dir / "packages").exists()
    assert isinstance(visnet.ViSNetCalculator(model=small_model(), accel="eager").model, visnet.ViSNet)


def test_a_long_job_builds_in_the_background_then_switches_once(capsys: pytest.CaptureFixture) -> None:
    launcher = ThreadLauncher()
    model = auto_model(launcher)
    eager = call(model.model)
    results = [call(model) for _ in range(2)]
    assert len(launcher.keys) == 1 and model.state in ("waiting", "loading")
    assert model.wait(10) and model.active_form == "exported"
    results += [call(model) for _ in range(3)]
    assert len(launcher.keys) == 1 and model.switched_after == 2
    for out in results:
        torch.testing.assert_close(out["forces"], eager["forces"], rtol=0, atol=0)
    assert capsys.readouterr().err.count("now runs from its exported package") == 1


def test_a_short_job_neither_builds_nor_loads() -> None:
    launcher = ThreadLauncher()
    model = auto_model(launcher, policy=AutoPolicy())
    model.expect_calls(3)
    for _ in range(3):
        call(model)
    assert launcher.keys == [] and model.state == "eager"


def test_an_announced_long_job_decides_at_its_second_call() -> None:
    launcher = ThreadLauncher()
    model = auto_model(launcher, policy=AutoPolicy(load_seconds=1.0, build_seconds=5.0))
    model.expect_calls(10**7)  # ten million calls: hours eagerly
    call(model)
    assert launcher.keys == []
    call(model)
    assert len(launcher.keys) == 1


def test_a_warm_cache_is_used_without_building(tmp_path: Path) -> None:
    launcher = ThreadLauncher()
    model = auto_model(launcher)
    FastPathCache().build(cache_key(model.model), model_file(tmp_path, model.model), fake_export)
    call(model), call(model)
    assert model.wait(10) and launcher.keys == []


def test_a_model_edited_after_its_package_was_cached_gets_a_new_package(tmp_path: Path) -> None:
    original = small_model().eval()
    FastPathCache().build(cache_key(original), model_file(tmp_path, original), fake_export)
    edited = copy.deepcopy(original)
    with torch.no_grad():
        next(edited.parameters()).view(-1)[0] += 0.1
    launcher = ThreadLauncher()
    model = auto_model(launcher, model=edited)
    call(model), call(model)
    assert [k.content for k in launcher.keys] == [content_hash(edited)]


def test_weights_changed_while_loading_keep_the_model_eager() -> None:
    gate = threading.Event()
    model = auto_model(ThreadLauncher(gate))
    call(model), call(model)
    with torch.no_grad():
        next(model.model.parameters()).view(-1)[0] += 0.1  # the key no longer describes the weights
    gate.set()
    assert not model.wait(10) and model.active_form == "eager"


@pytest.mark.parametrize(
    "fault",
    ["no compiler", "export fails", "not writable", "does not load", "build process dies"],
)
def test_every_fault_leaves_the_model_eager_with_one_warning(
    fault: str, monkeypatch: pytest.MonkeyPatch, cache_dir: Path, tmp_path: Path
) -> None:
    launcher = ThreadLauncher()
    model = auto_model(launcher)
    if fault == "no compiler":
        monkeypatch.setattr(vauto, "compile_available", lambda device: (False, "no C++ compiler ('g++' not on PATH)"))
    elif fault == "export fails":
        key = cache_key(model.model)
        FastPathCache().build(key, model_file(tmp_path, model.model), lambda *a: 1 / 0)
    elif fault == "not writable":
        cache_dir.mkdir(parents=True)
        (cache_dir / "packages").write_text("not a folder")
    elif fault == "does not load":
        FastPathCache().build(cache_key(model.model), model_file(tmp_path, model.model), fake_export)

        def refuse(path: Path, device: torch.device, dtype: torch.dtype) -> None:
            raise visnet.accel.export.ExportError("exported with torch 1.0 but this is torch 2.13")

        model.loader = refuse
    elif fault == "build process dies":
        model.launcher = lambda *args: type("Dead", (), {"poll": lambda self: -9})()
    eager = call(model.model)
    with pytest.warns(FastPathWarning) as caught:
        results = [call(model) for _ in range(6)]
        model.wait(10)
        results += [call(model) for _ in range(2)]
    assert len(caught) == 1 and "runs eagerly" in str(caught[0].message) and "\n" not in str(caught[0].message)
    assert model.active_form == "eager" and model.state == "off"
    for out in results:
        torch.testing.assert_close(out["energy"], eager["energy"], rtol=0, atol=0)
    if fault == "does not load":  # removed, and not rebuilt by every run
        assert FastPathCache().entries() == [] and "did not load" in FastPathCache().failure(cache_key(model.model))


def test_two_models_of_one_key_build_once_and_both_switch() -> None:
    gate = threading.Event()
    launcher = ThreadLauncher(gate)
    first, second = auto_model(launcher), auto_model(launcher)
    call(first), call(first)
    call(second), call(second)
    assert len(launcher.keys) == 1 and second.state == "waiting"
    gate.set()
    assert first.wait(10) and second.wait(10)


def test_systems_too_large_for_an_unsliced_graph_run_eagerly_after_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    model = auto_model(ThreadLauncher())
    call(model), call(model)
    assert model.wait(10)
    fast_calls = []
    model._fast.register_forward_pre_hook(lambda *args: fast_calls.append(1))
    z, pos = ethanol_inputs()
    neighbors = visnet.neighbors.radius_graph(pos, model.cutoff, self_loops=True)
    model(z, pos, neighbors=neighbors), model(z, pos)
    assert len(fast_calls) == 2
    monkeypatch.setattr(vauto, "EXPORTED_EDGE_BYTES", 1.0)  # every edge list is too large now
    monkeypatch.setattr(vauto, "LARGE_ATOMS", 3)
    eager_calls = model.calls
    model(z, pos, neighbors=neighbors), model(z, pos)
    assert len(fast_calls) == 2 and model.calls == eager_calls + 2


def test_copies_start_afresh() -> None:
    model = auto_model(ThreadLauncher())
    call(model), call(model)
    model.wait(10)
    twin = copy.deepcopy(model)
    assert twin.active_form == "eager" and twin.state == "eager" and twin.calls == model.calls
    torch.testing.assert_close(call(twin)["energy"], call(model)["energy"])


def test_accel_choices_are_checked_in_one_line() -> None:
    with pytest.raises(ValueError, match="accel must be one of auto, eager, compile, export; got 'fast'"):
        visnet.ViSNetCalculator(model=small_model(), accel="fast")
    with pytest.raises(ValueError, match="compile=True contradicts accel='eager'"):
        visnet.ViSNetCalculator(model=small_model(), accel="eager", compile=True)


# --------------------------------------------------------------------------- real exports (slow)


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("real-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VISNET_CACHE_DIR", str(folder))
        yield folder


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_a_real_background_build_switches_and_agrees_with_eager(
    dtype: torch.dtype, real_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("VISNET_CACHE_DIR", str(real_cache))
    model = small_model(dtype=dtype).eval().requires_grad_(False)
    auto = AutoViSNet(model, "small", policy=EAGER_POLICY)
    z, pos = ethanol_inputs(dtype)
    cell = torch.eye(3, dtype=dtype) * 6.0
    eager = [model(z, pos), model(z, pos % 6.0, cell=cell, compute_stress=True)]
    auto(z, pos), auto(z, pos)
    assert auto.wait(600), FastPathCache().failure(cache_key(model))
    assert capsys.readouterr().err.count("now runs from its exported package") == 1
    fast = [auto(z, pos), auto(z, pos % 6.0, cell=cell, compute_stress=True)]
    assert auto.active_form == "exported"
    tol = {torch.float64: 1e-10, torch.float32: 1e-5}[dtype]
    for got, want in zip(fast, eager):
        for name in ("energy", "forces"):
            scale = float(want[name].detach().abs().max())
            np.testing.assert_allclose(got[name].detach(), want[name].detach(), rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(fast[1]["stress"].detach(), eager[1]["stress"].detach(), rtol=tol, atol=tol * 1e-2)
    # the package is recorded as built here: accel="export" loads it without trust_package or a build
    exported = visnet.ViSNetCalculator(model=model, dtype=dtype, accel="export").model
    assert visnet.model.interface.model_form(exported) == "exported"
