"""The bad-input matrix (issue 7): every entry point either raises a clear error that names the
culprit or returns a correct, finite answer — never NaN, never a hang, never an IndexError from
inside torch.

Entry points: the model API, the neighbour list, the ASE calculator (single and batched),
``visnet.predict``, the data loaders, the ``visnet`` CLI (in-process) and checkpoint loading.
Single cases already pinned elsewhere (``test_model_inputs``, ``test_neighbors``, ``test_data``,
``test_checkpoint``, ``test_calculator``, ``test_predict``) are not repeated; this module walks the
combinations across entry points. Float64 throughout: identities are checked at 1e-10 (relative
where values are ~1e2, see ``REL``), the accumulated rounding of a 2-layer network being ~1e-14.
"""

from __future__ import annotations

import contextlib
import io
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.io import write
from conftest import REPO, shared_file
from helpers import CUTOFF, PickledCode, lightning_payload, small_model, water_molecule
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visnet import ViSNet, load_model, predict, radius_graph, save_model
from visnet.cli import main as visnet_main
from visnet.data import load_atoms_data
from visnet.inference.calculator import ViSNetCalculator
from visnet.neighbors import MAX_PERIODIC_IMAGES

HANG_SECONDS = 120  # generous for 2 contended cores; a hang would otherwise block the suite
REL = 1e-10  # float64 identities (sums of ~10^3 terms of size ~10^2 round at ~1e-13 relative)
ATOMREF = {1: -0.5, 6: -37.8, 7: -54.6, 8: -75.1}  # free-atom energies, eV (model units)
TINY = str(REPO / "configs" / "tiny.yaml")


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """Turn a hang into a failure: SIGALRM raises after ``HANG_SECONDS``."""

    def _hang(signum: int, frame: object) -> None:
        raise TimeoutError(f"no answer within {HANG_SECONDS} s: the entry point hangs")

    previous = signal.signal(signal.SIGALRM, _hang)
    signal.alarm(HANG_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def model() -> ViSNet:
    """The calculator tests' random float64 model (cutoff 4 Å, Z < 10) with free-atom references."""
    net = small_model()
    with torch.no_grad():
        for z, value in ATOMREF.items():
            net.prior_model.atomref.weight[z] = value
    return net.eval()


@pytest.fixture(scope="module")
def model_file(model: ViSNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model(model, tmp_path_factory.mktemp("model") / "model.pt")


# --------------------------------------------------------------------------- entry points (Atoms in)
Result = tuple[float, np.ndarray]  # energy (eV), forces (N, 3) eV/Å


def via_model(model: ViSNet, atoms: Atoms) -> Result:
    """``model(z, pos, cell=, pbc=)``; a periodic system with an all-zero cell passes ``cell=None``."""
    cell = pbc = None
    if atoms.pbc.any():
        pbc = torch.as_tensor(atoms.pbc)
        cell = torch.as_tensor(atoms.cell.array) if atoms.cell.array.any() else None
    out = model(torch.as_tensor(atoms.numbers), torch.as_tensor(atoms.positions), cell=cell, pbc=pbc)
    return out["energy"].item(), out["forces"].detach().numpy()


def via_calculator(model: ViSNet, atoms: Atoms) -> Result:
    atoms.calc = ViSNetCalculator(model, device="cpu")
    return atoms.get_potential_energy(), atoms.get_forces()


def via_batch(model: ViSNet, atoms: Atoms) -> Result:
    """``calculate_batch`` with a good molecule first: errors must name the bad image (1)."""
    water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    result = ViSNetCalculator(model, device="cpu").calculate_batch([water, atoms])[1]
    return result["energy"], result["forces"]


def via_predict(model: ViSNet, atoms: Atoms) -> Result:
    result = predict(atoms, model=model)[0]
    return result["energy"], result["forces"]


ENTRY_POINTS = {"model": via_model, "calculator": via_calculator, "batch": via_batch, "predict": via_predict}
entry_points = pytest.mark.parametrize("entry", list(ENTRY_POINTS))


# --------------------------------------------------------------------------- bad structures


def _with_position(index: int, value: list[float], **kwargs) -> Atoms:
    atoms = water_molecule(**kwargs)
    atoms.positions[index] = value
    return atoms


BAD_STRUCTURES: dict[str, tuple[Callable[[], Atoms], str]] = {
    # the model covers Z < 10: sodium is unknown (named, with the first atom carrying it)
    "unknown element": (
        lambda: Atoms("ONaH", positions=[[0, 0, 0], [2, 0, 0], [0, 1, 0]]),
        r"atom 1 has atomic number 11|Na \(Z=11\) \(first at atom 1\)",
    ),
    "NaN position": (
        lambda: _with_position(1, [0.9, np.nan, 0]),
        r"position of atom 1 is not finite|atoms \[1\] have non-finite",
    ),
    "inf position": (
        lambda: _with_position(1, [np.inf, 0, 0]),
        r"position of atom 1 is not finite|atoms \[1\] have non-finite",
    ),
    "empty structure": (lambda: Atoms(), r"empty structure|holds no atoms"),
    "coincident atoms": (lambda: _with_position(2, [0.96, 0, 0]), r"atoms [12] and [12] are coincident"),
    "atom on its neighbour's image": (
        lambda: _with_position(1, [5.0, 0, 0], cell=np.eye(3) * 5.0, pbc=True),
        r"atoms [01] and [01] are coincident",
    ),
    "pbc without cell": (lambda: water_molecule(pbc=True), r"needs a cell|zero or degenerate"),
    "singular cell": (lambda: water_molecule(cell=[[5, 0, 0], [5, 0, 0], [0, 0, 5]], pbc=True), r"singular|degenerate"),
    "absurdly small cell (5 mÅ)": (
        lambda: water_molecule(cell=np.eye(3) * 0.005, pbc=True),
        r"too small for the cutoff",
    ),
}


@entry_points
@pytest.mark.parametrize("case", list(BAD_STRUCTURES))
def test_bad_structure_raises_naming_the_culprit(model: ViSNet, entry: str, case: str) -> None:
    build, message = BAD_STRUCTURES[case]
    with pytest.raises(ValueError, match=message) as info:
        ENTRY_POINTS[entry](model, build())
    if entry == "batch":
        assert "image 1" in str(info.value)


# --------------------------------------------------------------------------- correct finite answers


@entry_points
def test_isolated_atoms_get_their_references(model: ViSNet, entry: str) -> None:
    """Atoms beyond the cutoff of each other (one a million Å away): the sum of the free-atom
    references, exactly zero forces."""
    atoms = Atoms("CNOH", positions=[[0, 0, 0], [CUTOFF + 0.5, 0, 0], [0, CUTOFF + 0.1, 0], [1e6, -1e6, 3e5]])
    energy, forces = ENTRY_POINTS[entry](model, atoms)
    assert energy == pytest.approx(sum(ATOMREF[z] for z in atoms.numbers), rel=REL)
    assert np.all(forces == 0.0)


def dense_box(seed: int = 0) -> Atoms:
    """40 atoms in a 6 Å periodic cube: ~50 neighbours each within 4 Å (PyG would keep 32)."""
    rng = np.random.default_rng(seed)
    positions = [rng.random(3) * 6.0]
    while len(positions) < 40:
        p = rng.random(3) * 6.0
        d = (np.asarray(positions) - p + 3.0) % 6.0 - 3.0
        if np.linalg.norm(d, axis=1).min() > 0.9:
            positions.append(p)
    numbers = rng.choice([1, 6, 7, 8], size=40)
    return Atoms(numbers=numbers, positions=positions, cell=np.eye(3) * 6.0, pbc=True)


def test_dense_box_has_more_than_32_neighbours() -> None:
    box = dense_box()
    graph = radius_graph(torch.as_tensor(box.positions), CUTOFF, cell=torch.as_tensor(box.cell.array))
    assert torch.bincount(graph.edge_index[1]).min() > 32


@entry_points
def test_more_than_32_neighbours_permutation_invariant(model: ViSNet, entry: str) -> None:
    box = dense_box()
    perm = np.random.default_rng(1).permutation(len(box))
    energy, forces = ENTRY_POINTS[entry](model, box)
    energy_p, forces_p = ENTRY_POINTS[entry](model, box[perm])
    assert energy_p == pytest.approx(energy, rel=REL)
    np.testing.assert_allclose(forces_p, forces[perm], rtol=0, atol=REL * np.abs(forces).max())


def tiny_cell() -> Atoms:
    """A triclinic cell with heights 2.2–2.6 Å, below the 4 Å cutoff: every atom sees many images of itself."""
    cell = [[2.6, 0.0, 0.0], [0.5, 2.4, 0.0], [0.3, -0.4, 2.3]]
    return Atoms("CO", scaled_positions=[[0.1, 0.2, 0.3], [0.55, 0.6, 0.8]], cell=cell, pbc=True)


@entry_points
def test_tiny_cell_equals_an_eighth_of_its_supercell(model: ViSNet, entry: str) -> None:
    cell = tiny_cell()
    super_cell = cell.repeat(2)
    energy, forces = ENTRY_POINTS[entry](model, cell)
    energy_8, forces_8 = ENTRY_POINTS[entry](model, super_cell)
    assert np.isfinite(energy) and abs(energy - sum(ATOMREF[z] for z in cell.numbers)) > 1e-3  # images interact
    assert energy_8 == pytest.approx(8 * energy, rel=REL)
    np.testing.assert_allclose(forces_8, np.tile(forces, (8, 1)), rtol=0, atol=REL * np.abs(energy))


def test_tiny_cell_stress_equals_the_supercells(model: ViSNet) -> None:
    cell, super_cell = tiny_cell(), tiny_cell().repeat(2)
    for atoms in (cell, super_cell):
        atoms.calc = ViSNetCalculator(model, device="cpu")
    stress = cell.get_stress()
    assert np.abs(stress).max() > 1e-6
    np.testing.assert_allclose(super_cell.get_stress(), stress, rtol=0, atol=REL * np.abs(stress).max())


# --------------------------------------------------------------------------- neighbour list
METHODS = ["dense", "cell_list", "vesin"]


@pytest.mark.parametrize("method", METHODS)
def test_neighbour_counts_in_a_tiny_cell_match_the_supercell(method: str) -> None:
    cell, super_cell = tiny_cell(), tiny_cell().repeat(2)
    counts = []
    for atoms in (cell, super_cell):
        graph = radius_graph(
            torch.as_tensor(atoms.positions), CUTOFF, cell=torch.as_tensor(atoms.cell.array), method=method
        )
        counts.append(torch.bincount(graph.edge_index[1], minlength=len(atoms)))
    assert counts[0].min() > 32  # mostly images of the two atoms themselves
    assert torch.equal(counts[1], counts[0].repeat(8))


STRETCHED = [[0.0, 0.0, 0.0], [0.96e12, 0.0, 0.0], [-0.24e12, 0.93e12, 0.0]]  # a flat molecule stretched 1e12×


@pytest.mark.parametrize("method", ["dense", "cell_list"])
def test_neighbour_list_far_apart_atoms_give_no_edges(method: str) -> None:
    """No edges and no giant bin grid (the cell list asked for 5 GB here)."""
    assert radius_graph(torch.tensor(STRETCHED, dtype=torch.float64), CUTOFF, method=method).num_edges == 0


def test_neighbour_list_sparse_flat_systems_do_not_crash_vesin() -> None:
    """vesin 0.6 dies with SIGFPE on a thin, wide bounding box (the stretched molecule; 600 atoms
    with one 1e4 Å away): the search must fall back. In its own process, so that a regression
    cannot take the test session down."""
    code = (
        "import torch; from visnet import radius_graph\n"
        f"assert radius_graph(torch.tensor({STRETCHED}, dtype=torch.float64), 4.0, method='vesin').num_edges == 0\n"
        "pos = torch.rand(600, 3, dtype=torch.float64) * 20; pos[0, :2] = 1e4\n"
        "a = radius_graph(pos, 5.0, method='vesin'); b = radius_graph(pos, 5.0, method='cell_list')\n"
        "assert torch.equal(a.edge_index, b.edge_index) and a.num_edges > 0"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_SECONDS)
    assert run.returncode == 0, f"exit code {run.returncode}: {run.stderr[-2000:]}"


@pytest.mark.parametrize("method", METHODS)
def test_neighbour_list_refuses_absurdly_small_cells(method: str) -> None:
    pos = torch.zeros(1, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=f"graph 0 is too small for the cutoff 4.*limit {MAX_PERIODIC_IMAGES:,}"):
        radius_graph(pos, CUTOFF, cell=torch.eye(3, dtype=torch.float64) * 1e-3, method=method)


# --------------------------------------------------------------------------- model API: types and shapes
WATER_Z = torch.tensor([8, 1, 1])
WATER_POS = torch.tensor([[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], dtype=torch.float64)
BOX = torch.eye(3, dtype=torch.float64) * 6.0

MODEL_ARGUMENTS = {
    "NumPy positions": (dict(pos=WATER_POS.numpy()), r"pos must be a torch.Tensor, got ndarray"),
    "list positions": (dict(pos=WATER_POS.tolist()), r"pos must be a torch.Tensor, got list"),
    "NumPy batch": (dict(batch=np.zeros(3, dtype=np.int64)), r"batch must be a torch.Tensor"),
    "float batch": (dict(batch=torch.zeros(3)), r"batch must hold integer graph indices"),
    "cell for two graphs": (dict(cell=BOX.expand(2, 3, 3)), r"cell must have shape \(3, 3\) or \(1, 3, 3\)"),
    "float32 cell": (dict(cell=BOX.float()), r"cell has dtype torch.float32 but the model is torch.float64"),
    "NaN cell": (dict(cell=BOX * float("nan")), r"cell has non-finite entries"),
    "pbc of length 2": (dict(cell=BOX, pbc=torch.tensor([True, True])), r"pbc must have shape \(3,\)"),
    "float16 positions": (dict(pos=WATER_POS.half()), r"pos has dtype torch.float16 but the model is torch.float64"),
}


@pytest.mark.parametrize("case", list(MODEL_ARGUMENTS))
def test_model_argument_types_and_shapes(model: ViSNet, case: str) -> None:
    changes, message = MODEL_ARGUMENTS[case]
    arguments = dict(z=WATER_Z, pos=WATER_POS) | changes
    with pytest.raises(ValueError, match=message):
        model(**arguments)


# --------------------------------------------------------------------------- mismatched units


def test_unknown_model_units_are_refused_or_reported(model: ViSNet, tmp_path: Path, capsys) -> None:
    """A model file in an unknown energy unit: the calculator, predict, MD and evaluate refuse it
    naming the unit (nothing is silently taken to be eV)."""
    path = save_model(model, tmp_path / "furlong.pt")  # save_model refuses the unit: edit the file as others might
    payload = torch.load(path, weights_only=True)
    payload["metadata"]["units"]["energy"] = "furlong"
    torch.save(payload, path)
    with pytest.raises(ValueError, match="unknown energy unit 'furlong'"):
        ViSNetCalculator(model_path=path, device="cpu")
    with pytest.raises(ValueError, match="unknown energy unit 'furlong'"):
        predict(water_molecule(), model=str(path))
    data = str(shared_file("rmd17", "rmd17_ethanol_train1000.npz"))
    assert (
        visnet_main(
            ["evaluate", "--model", str(path), "--data", data, "--max-structures", "2", "--out", str(tmp_path / "eval")]
        )
        == 2
    )
    assert (
        visnet_main(
            [
                "md",
                "ethanol",
                "--model",
                str(path),
                "--steps",
                "1",
                "--output-dir",
                str(tmp_path),
                "--no-progress",
                "--no-plots",
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.count("'furlong'") == 2


def test_property_model_is_refused_where_energies_are_needed(tmp_path: Path) -> None:
    dipole = ViSNet(
        hidden_channels=16,
        num_layers=1,
        num_heads=2,
        num_rbf=8,
        max_z=10,
        output_head="dipole",
        output_key="mu",
        derivative=False,
    )
    path = save_model(dipole, tmp_path / "mu.pt", units={"mu": "D", "length": "Å"})
    with pytest.raises(ValueError, match="needs an energy model"):
        ViSNetCalculator(model_path=path, device="cpu")


# --------------------------------------------------------------------------- data loaders


def _frames(**changes) -> list[Atoms]:
    """Two CO frames with energies and forces; ``changes`` apply to frame 1."""
    frames = []
    for k in range(2):
        atoms = Atoms("CO", positions=[[0, 0, 0], [1.13 + 0.01 * k, 0, 0]])
        atoms.info["energy"] = -1.0 - k
        atoms.arrays["forces"] = np.zeros((2, 3))
        frames.append(atoms)
    bad = frames[1]
    if "numbers" in changes:
        bad.numbers = changes["numbers"]
    if "position" in changes:
        bad.positions[1] = changes["position"]
    if "energy" in changes:
        bad.info["energy"] = changes["energy"]
    if "pbc" in changes:
        bad.pbc = changes["pbc"]
    return frames


def _extxyz(path: Path, **changes) -> Path:
    write(path, _frames(**changes), format="extxyz")
    return path


def _md17(path: Path, frames: int = 4, **changes) -> Path:
    """A small sGDML-layout npz (or rMD17 layout with ``rmd17=True``), keys replaced by ``changes``."""
    rng = np.random.default_rng(0)
    arrays = {
        "R": rng.random((frames, 3, 3)) * 3,
        "z": np.array([8, 1, 1]),
        "E": np.zeros(frames),
        "F": np.zeros((frames, 3, 3)),
    }
    if changes.pop("rmd17", False):
        arrays = dict(coords=arrays["R"], nuclear_charges=arrays["z"], energies=arrays["E"], forces=arrays["F"])
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def _qm9(path: Path, nan: bool = False) -> Path:
    targets = np.zeros((2, 2))
    if nan:
        targets[1, 0] = np.nan
    np.savez(
        path,
        z=np.array([6, 1, 1, 1, 1, 8]),
        pos=np.random.default_rng(0).random((6, 3)) * 2,
        ptr=np.array([0, 5, 6]),
        targets=targets,
        target_names=np.array(["U0", "mu"]),
    )
    return path


def _truncated(path: Path) -> Path:
    _md17(path)
    path.write_bytes(path.read_bytes()[:300])
    return path


NON_FINITE = r"has non-finite \(NaN/inf\)"
DATA_FILES: dict[str, tuple[Callable[[Path], Path], str, dict]] = {
    "extxyz NaN position": (
        lambda d: _extxyz(d / "a.extxyz", position=[np.nan, 0, 0]),
        rf"frame 1 {NON_FINITE} positions",
        {},
    ),
    "extxyz NaN energy": (lambda d: _extxyz(d / "b.extxyz", energy=np.nan), rf"frame 1 {NON_FINITE} energy", {}),
    "extxyz unknown element": (
        lambda d: _extxyz(d / "c.extxyz", numbers=[6, 0]),
        r"atomic numbers must be positive",
        {},
    ),
    "extxyz pbc without cell": (
        lambda d: _extxyz(d / "d.extxyz", pbc=True),
        r"frame 1 is periodic .* zero or degenerate",
        {},
    ),
    "npz truncated": (lambda d: _truncated(d / "e.npz"), r"cannot read this file \(BadZipFile", {}),
    "npz fractional Z": (
        lambda d: _md17(d / "f.npz", z=np.array([8.0, 1.5, 1.0])),
        r"key 'z' must hold integer atomic numbers",
        {},
    ),
    "npz element symbols": (
        lambda d: _md17(d / "g.npz", z=np.array(["O", "H", "H"])),
        r"key 'z' must hold integer",
        {},
    ),
    "npz no frames": (lambda d: _md17(d / "h.npz", frames=0), r"key 'R' holds no frames", {}),
    "npz object array": (lambda d: _md17(d / "i.npz", E=np.array([None] * 4, dtype=object)), r"Object arrays", {}),
    "rMD17 NaN coords": (
        lambda d: _md17(d / "j.npz", rmd17=True, coords=np.full((4, 3, 3), np.nan)),
        rf"frame 0 {NON_FINITE} positions",
        {},
    ),
    "rMD17 missing energies": (lambda d: _md17(d / "k.npz", rmd17=True, energies=None), r"'energies'", {}),
    "QM9 NaN target": (lambda d: _qm9(d / "l.npz", nan=True), rf"frame 1 {NON_FINITE} U0", {"target": "U0"}),
    "QM9 target missing": (
        lambda d: _qm9(d / "m.npz"),
        r"target 'homo' not in the file's target_names",
        {"target": "homo"},
    ),
}


@pytest.mark.parametrize("case", list(DATA_FILES))
def test_bad_data_file_is_named_with_the_problem(tmp_path: Path, case: str) -> None:
    build, message, options = DATA_FILES[case]
    path = build(tmp_path)
    with pytest.raises(ValueError, match=message) as info:
        load_atoms_data(path, cache_dir=tmp_path / "cache", **options)
    assert str(path) in str(info.value)


@pytest.fixture(scope="module")
def coincident_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 rMD17 ethanol frames; in frame 45 atom 1 sits on atom 0."""
    src = np.load(shared_file("rmd17", "rmd17_ethanol_train1000.npz"))
    positions = src["R"][:60].copy()
    positions[45, 1] = positions[45, 0]
    path = tmp_path_factory.mktemp("data") / "coincident.npz"
    np.savez(path, R=positions, z=src["z"], E=src["E"][:60], F=src["F"][:60])
    return path


def test_fit_names_the_structure_with_coincident_atoms(coincident_npz: Path, tmp_path: Path, capsys) -> None:
    args = [
        "fit",
        "--config",
        TINY,
        "--data.path",
        str(coincident_npz),
        "--trainer.default_root_dir",
        str(tmp_path),
        "--data.num_train",
        "50",
        "--data.num_val",
        "10",
        "--data.num_test",
        "0",
        "--trainer.enable_progress_bar",
        "false",
    ]
    assert visnet_main(args) == 2
    assert f"structure 45 of {coincident_npz}: atoms 0 and 1 are coincident" in capsys.readouterr().err


def test_evaluate_names_the_structure_with_coincident_atoms(coincident_npz: Path, model_file: Path, capsys) -> None:
    out = str(model_file.parent / "evaluation")
    args = ["evaluate", "--model", str(model_file), "--data", str(coincident_npz), "--out", out]
    assert visnet_main(args) == 2
    assert f"structure 45 of {coincident_npz}: atoms 0 and 1 are coincident" in capsys.readouterr().err


# --------------------------------------------------------------------------- CLI configs


def _config_with(tmp_path: Path, section: str | None, key: str) -> Path:
    config = yaml.safe_load(Path(TINY).read_text())
    (config if section is None else config[section])[key] = 1
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("section", "key"), [(None, "bogus"), ("model", "hidden_channel"), ("data", "num_trian"), ("trainer", "max_epoch")]
)
def test_config_with_an_unknown_key_is_named(tmp_path: Path, capsys, section: str | None, key: str) -> None:
    config = _config_with(tmp_path, section, key)
    assert visnet_main(["fit", "--config", str(config), "--trainer.default_root_dir", str(tmp_path / "run")]) == 2
    name = key if section is None else f"{section}.{key}"
    assert f"does not accept option '{name}'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing started


def test_config_is_parsed_not_executed(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    touch = f"!!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ['{marker}']]"
    config.write_text(f"model: {touch}\n")
    assert visnet_main(["fit", "--config", str(config)]) == 2
    assert "could not determine a constructor" in capsys.readouterr().err
    assert not marker.exists()


# --------------------------------------------------------------------------- checkpoint files


def _save(path: Path, payload: object) -> Path:
    torch.save(payload, path)
    return path


def _cut(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _other_model(model: ViSNet, path: Path) -> Path:
    payload = torch.load(save_model(model, path), weights_only=True)
    payload["hyperparameters"]["hidden_channels"] = 64
    return _save(path, payload)


def _nan_weights(model: ViSNet, path: Path) -> Path:
    payload = torch.load(save_model(model, path), weights_only=True)
    payload["state_dict"]["representation_model.embedding.weight"][3, 5] = float("nan")
    return _save(path, payload)


BAD_CHECKPOINTS: dict[str, tuple[Callable[[ViSNet, Path], Path], str]] = {
    "truncated .pt": (lambda m, d: _cut(save_model(m, d / "cut.pt")), r"corrupted, truncated"),
    "truncated .ckpt": (lambda m, d: _cut(_save(d / "cut.ckpt", lightning_payload(m))), r"corrupted, truncated"),
    "empty file": (lambda m, d: _empty(d / "empty.pt"), r"corrupted, truncated"),
    "a folder": (
        lambda m, d: (d / "run").mkdir() or d / "run",
        r"is a folder, not a model file|holds neither model.pt",
    ),
    "foreign file": (lambda m, d: _save(d / "resnet.pt", {"fc.weight": torch.zeros(2, 2)}), r"not a ViSNet model file"),
    "foreign .ckpt": (
        lambda m, d: _save(
            d / "other.ckpt", {"pytorch-lightning_version": "2.6.0", "state_dict": {}, "hyper_parameters": {"lr": 0.1}}
        ),
        r"not one written by",
    ),
    "another model's weights": (lambda m, d: _other_model(m, d / "other.pt"), r"weights do not match"),
    "NaN weights": (lambda m, d: _nan_weights(m, d / "nan.pt"), r"non-finite \(NaN/inf\) weights in \['representation"),
    "pickled code .pt": (
        lambda m, d: _save(d / "evil.pt", {"format": "visnet-model", "x": PickledCode(d / "pwned")}),
        r"refused for safety",
    ),
    "pickled code .ckpt": (
        lambda m, d: _save(d / "evil.ckpt", {**lightning_payload(m), "x": PickledCode(d / "pwned")}),
        r"refused for safety",
    ),
}


def _load(path: Path) -> None:
    load_model(path)


def _calculator(path: Path) -> None:
    ViSNetCalculator(model_path=path, device="cpu")


def _predict(path: Path) -> None:
    predict(water_molecule(), model=str(path))


def _cli(command: str) -> Callable[[Path], None]:
    """``visnet md`` / ``visnet evaluate`` with the file: exit code 2 and the message on stderr."""

    def run(path: Path) -> None:
        extra = ["ethanol", "--steps", "1", "--no-progress", "--no-plots", "--output-dir", str(path.parent / "md")]
        if command == "evaluate":
            data = str(shared_file("rmd17", "rmd17_ethanol_train1000.npz"))
            extra = ["--data", data, "--out", str(path.parent / "evaluation")]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = visnet_main([command, "--model", str(path), *extra])
        assert code == 2
        raise ValueError(err.getvalue())

    return run


LOADERS = {
    "load_model": _load,
    "calculator": _calculator,
    "predict": _predict,
    "visnet md": _cli("md"),
    "visnet evaluate": _cli("evaluate"),
}


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_bad_checkpoint_is_refused_naming_the_file(model: ViSNet, tmp_path: Path, case: str, loader: str) -> None:
    build, message = BAD_CHECKPOINTS[case]
    path = build(model, tmp_path)
    with pytest.raises(ValueError, match=message) as info:
        LOADERS[loader](path)
    assert str(path) in str(info.value)
    assert not (tmp_path / "pwned").exists()  # pickled code never ran
    assert not (tmp_path / "md").exists()  # MD never started


def test_good_lightning_payload_loads(model: ViSNet, tmp_path: Path) -> None:
    """Control for the .ckpt rows above: the same payload, intact, loads as the same model."""
    path = _save(tmp_path / "good.ckpt", lightning_payload(model))
    loaded = load_model(path)
    z, pos = torch.tensor([8, 1, 1]), WATER_POS
    torch.testing.assert_close(loaded(z, pos)["energy"], model(z, pos)["energy"], rtol=0, atol=0)


# --------------------------------------------------------------------------- property-based


def _molecules() -> st.SearchStrategy:
    """Random small molecules: 1–8 atoms of H, C, N, O at random positions, some placed near
    another atom (1e-7–0.3 Å, i.e. coincident to very close) and some far away (1e2–1e9 Å)."""
    offset = st.tuples(*[st.floats(-1.0, 1.0)] * 3)
    atom = st.tuples(
        st.sampled_from([1, 6, 7, 8]),
        st.tuples(*[st.floats(-6.0, 6.0)] * 3),
        st.sampled_from(["free", "near", "far"]),
        offset,
        st.floats(-7.0, 9.0),  # log10 of the distance for "near" (< -0.5) and "far" (> 2) atoms
    )
    return st.lists(atom, min_size=1, max_size=8)


def _build(spec: list) -> Atoms:
    positions = []
    for k, (_, base, kind, direction, log_distance) in enumerate(spec):
        direction = np.asarray(direction) + np.array([1e-3, 0, 0])
        unit = direction / np.linalg.norm(direction)
        if kind == "near" and k > 0:
            positions.append(positions[-1] + unit * 10 ** min(log_distance, -0.5))
        elif kind == "far":
            positions.append(np.asarray(base) + unit * 10 ** max(log_distance, 2.0))
        else:
            positions.append(np.asarray(base))
    return Atoms(numbers=[z for z, *_ in spec], positions=positions)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=_molecules())
def test_random_molecules_give_finite_outputs_or_a_value_error(model: ViSNet, spec: list) -> None:
    atoms = _build(spec)
    for entry in (via_model, via_calculator):
        try:
            energy, forces = entry(model, atoms.copy())
        except ValueError as err:
            assert "coincident" in str(err), err  # the only legitimate refusal of these molecules
            continue
        assert np.isfinite(energy) and np.isfinite(forces).all()


# --------------------------------------------------------------------------- SMILES (issue 13)

LONG_SMILES = ".".join(["O"] * 130)  # 389 characters: longer than any file name may be
LONG_INVALID = "C" * 300 + "("


def _md(structure: str, model_file: Path, out: Path) -> list[str]:
    """``visnet md`` arguments for one step of ``structure`` with ``model_file``."""
    return ["md", structure, "--model", str(model_file), "--steps", "1", "--output-dir", str(out), "--no-progress"]


def test_fragments_of_a_smiles_are_embedded_apart() -> None:
    """'CCO.O': each fragment embedded on its own, no two atoms of different fragments closer than
    FRAGMENT_GAP (they used to be embedded on top of each other, 0.18 Å apart)."""
    from visnet.structures.molecules import FRAGMENT_GAP, load_structure

    atoms = load_structure("CCO.O")
    assert atoms.get_chemical_formula() == "C2H8O2"
    ethanol, water = [0, 1, 2, 4, 5, 6, 7, 8, 9], [3, 10, 11]  # RDKit order: heavy atoms, then H
    gaps = np.linalg.norm(atoms.positions[ethanol][:, None] - atoms.positions[water][None], axis=-1)
    assert gaps.min() >= FRAGMENT_GAP
    bonds = np.linalg.norm(atoms.positions[water[1:]] - atoms.positions[water[0]], axis=-1)
    np.testing.assert_allclose(bonds, 0.97, atol=0.05)  # each fragment is still a molecule


def test_many_fragments_keep_their_distance() -> None:
    from visnet.structures.molecules import FRAGMENT_GAP, load_structure

    atoms = load_structure("O.O.O.C")
    oxygens, carbon = np.flatnonzero(atoms.numbers == 8), np.flatnonzero(atoms.numbers == 6)
    heavy = atoms.positions[np.concatenate([oxygens, carbon])]
    distances = np.linalg.norm(heavy[:, None] - heavy[None], axis=-1)[np.triu_indices(4, 1)]
    assert distances.min() >= FRAGMENT_GAP


@pytest.mark.parametrize(
    ("smiles", "message"),
    [
        ("[NH4+]", r"net charge \+1"),
        ("CC(=O)[O-]", "net charge -1"),
        ("CC(=O)[O-].[Na+]", r"fragment 1 \(CC\(=O\)\[O-\]\) has net charge -1"),
        ("[CH3]", r"radical \(unpaired electrons on atoms C0\)"),
        ("[O][O]", "radical"),
    ],
)
def test_ions_and_radicals_are_refused(model_file: Path, tmp_path: Path, capsys, smiles: str, message: str) -> None:
    """The models are trained on neutral closed-shell molecules: ions, salts and radicals are
    refused naming the charge or the radical atoms (by load_structure, predict and visnet md)."""
    from visnet.structures.molecules import load_structure

    with pytest.raises(ValueError, match=message):
        load_structure(smiles)
    with pytest.raises(ValueError, match=message):
        predict(smiles, model=str(model_file))
    assert visnet_main(_md(smiles, model_file, tmp_path / "md")) == 2
    assert smiles in capsys.readouterr().err
    assert not (tmp_path / "md").exists()


@pytest.mark.parametrize("smiles", ["C[N+](=O)[O-]", "[NH3+]CC(=O)[O-]"])
def test_charge_separated_neutral_molecules_are_accepted(smiles: str) -> None:
    """Nitro groups and zwitterions carry formal charges but no net charge."""
    from visnet.structures.molecules import load_structure

    assert len(load_structure(smiles)) > 0


def test_smiles_longer_than_a_file_name_is_a_smiles(model_file: Path) -> None:
    """> 255 characters used to crash with OSError: File name too long (tried as a path first)."""
    from visnet.structures.molecules import load_structure, load_structures

    assert len(LONG_SMILES) > 255
    assert len(load_structure(LONG_SMILES)) == 390
    with pytest.raises(ValueError, match=r"invalid SMILES .*\(301 characters\)"):
        load_structures(LONG_INVALID)
    with pytest.raises(ValueError, match="not a file, a bundled molecule"):
        load_structure(LONG_INVALID)
    results = predict([LONG_INVALID, "O"], model=str(model_file), errors="skip")
    assert not results[0].ok and "invalid SMILES" in results[0].error
    assert results[1].ok


def test_visnet_md_with_a_long_invalid_smiles_exits_2(model_file: Path, tmp_path: Path, capsys) -> None:
    assert visnet_main(_md(LONG_INVALID, model_file, tmp_path / "md")) == 2
    assert "not a file, a bundled molecule" in capsys.readouterr().err


# --------------------------------------------------------------------------- one error boundary


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (ValueError("bad option --x"), "visnet: error: bad option --x"),
        (OSError(28, "no space left on device writing /x/model.pt"), "no space left on device writing /x/model.pt"),
        (PermissionError(13, "Permission denied", "/root/out"), "Permission denied: /root/out"),
        (IsADirectoryError(21, "Is a directory", "/tmp/out.csv"), "Is a directory: /tmp/out.csv"),
        (FileNotFoundError("structure file not found: a.xyz"), "structure file not found: a.xyz"),
    ],
)
@pytest.mark.parametrize("command", ["evaluate", "md", "predict", "fit", "export", "plot"])
def test_user_errors_of_every_subcommand_are_one_line(
    monkeypatch, capsys, command: str, error: Exception, message: str
) -> None:
    """Whatever a subcommand lets escape that is the user's to fix: one line, exit code 2."""
    modules = {
        "evaluate": ("visnet.cli.evaluate", "main"),
        "md": ("visnet.cli.md", "main"),
        "predict": ("visnet.cli.predict", "main"),
        "fit": ("visnet.cli.fit", "lightning_main"),
        "export": ("visnet.cli.export", "main"),
        "plot": ("visnet.cli.plot", "main"),
    }
    module, name = modules[command]

    def fail(argv: list[str]) -> int:
        raise error

    monkeypatch.setattr(f"{module}.{name}", fail)
    assert visnet_main([command]) == 2
    err = capsys.readouterr().err
    assert err.startswith("visnet: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_bug_keeps_its_traceback(monkeypatch) -> None:
    def fail(argv: list[str]) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("visnet.cli.evaluate.main", fail)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        visnet_main(["evaluate"])


# --------------------------------------------------------------------------- visnet fit, checked before training


def _fit(run_dir: Path, *extra: str) -> list[str]:
    """``visnet fit`` of the tiny config on 16 structures into ``run_dir``."""
    return [
        "fit",
        "--config",
        TINY,
        "--trainer.default_root_dir",
        str(run_dir),
        "--trainer.enable_progress_bar",
        "false",
        "--data.num_train",
        "16",
        "--data.num_val",
        "8",
        "--data.num_test",
        "0",
        *extra,
    ]


def _file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not a folder")
    return path


FIT_ERRORS = {
    "max_time not a duration": (
        lambda run: ["--trainer.max_time", "abc"],
        r"--trainer.max_time 'abc' is not a duration",
    ),
    "max_time negative": (lambda run: ["--trainer.max_time", "{hours: -1}"], "must be a positive duration"),
    "negative max_epochs": (lambda run: ["--trainer.max_epochs", "-3"], "--trainer.max_epochs must be a non-negative"),
    "run folder is a file": (lambda run: _file(run) and [], "is a file, not a folder"),
    "checkpoints folder is a file": (
        lambda run: _file(run / "ckpts") and ["--checkpoint.dirpath", str(run / "ckpts")],
        r"checkpoints folder .*ckpts is a file",
    ),
    "model.pt is a folder": (lambda run: (run / "model.pt").mkdir(parents=True) or [], r"model.pt is a folder"),
}


@pytest.mark.parametrize("case", list(FIT_ERRORS))
def test_fit_refuses_bad_limits_and_paths_before_training(tmp_path: Path, capsys, case: str) -> None:
    run = tmp_path / "run"
    extra, message = FIT_ERRORS[case]
    assert visnet_main(_fit(run, *extra(run))) == 2
    err = capsys.readouterr().err
    assert "visnet: error:" in err and re.search(message, err), err
    assert not (run / "checkpoints").exists() and not (run / "logs").exists()  # nothing trained


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """A tiny fit (2 steps per epoch, 3 epochs) stopped by Ctrl-C in its second epoch:
    (run folder, exit code, stderr)."""
    from visnet.training.module import ViSNetModule

    run = tmp_path_factory.mktemp("interrupted") / "run"
    original = ViSNetModule.training_step

    def step(self, batch, batch_idx):
        if self.global_step == 3:
            raise KeyboardInterrupt
        return original(self, batch, batch_idx)

    err = io.StringIO()
    ViSNetModule.training_step = step
    try:
        with contextlib.redirect_stderr(err):
            code = visnet_main(_fit(run, "--trainer.max_epochs", "3"))
    finally:
        ViSNetModule.training_step = original
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores Ctrl-C after one
    return run, code, err.getvalue()


def test_interrupted_fit_exports_a_model_that_says_so(interrupted_run: tuple[Path, int, str]) -> None:
    run, code, err = interrupted_run
    assert code == 1
    assert "training was interrupted" in err
    assert load_model(run / "model.pt").metadata["interrupted"] is True


def test_resuming_past_max_epochs_is_refused(interrupted_run: tuple[Path, int, str], capsys) -> None:
    """The checkpoint has trained 1 epoch: resuming with max_epochs 1 would train nothing."""
    run, _, _ = interrupted_run
    before = (run / "model.pt").read_bytes()
    assert visnet_main(_fit(run, "--trainer.max_epochs", "1", "--ckpt_path", "last")) == 2
    assert "has already trained 1 epochs and --trainer.max_epochs is 1" in capsys.readouterr().err
    assert (run / "model.pt").read_bytes() == before


# --------------------------------------------------------------------------- visnet md / evaluate outputs


def _evaluate(model_file: Path, out: Path) -> list[str]:
    data = str(shared_file("rmd17", "rmd17_ethanol_train1000.npz"))
    return ["evaluate", "--model", str(model_file), "--data", data, "--max-structures", "2", "--out", str(out)]


OUTPUT_FOLDERS = {
    "a file": (lambda tmp: _file(tmp / "out"), r"output folder \(--\w+(-dir)?\) .*out is a file, not a folder"),
    "below a file": (lambda tmp: _file(tmp / "out") / "sub", r"out/sub cannot be created: .*out is a file"),
}


@pytest.mark.parametrize("command", ["md", "evaluate"])
@pytest.mark.parametrize("case", [*OUTPUT_FOLDERS, "not writable"])
def test_output_folder_that_cannot_be_written_is_refused_first(
    model_file: Path, tmp_path: Path, monkeypatch, capsys, command: str, case: str
) -> None:
    """Before any work: the output folder is a file, lies below a file, or is not writable."""
    if case == "not writable":  # tests may run as root, for whom os.access always says yes
        out, message = tmp_path / "locked", "is not writable"
        monkeypatch.setattr("visnet.files.paths.os.access", lambda path, mode: False)
    else:
        build, message = OUTPUT_FOLDERS[case]
        out = build(tmp_path)
    args = _md("ethanol", model_file, out) if command == "md" else _evaluate(model_file, out)
    assert visnet_main(args) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err


@pytest.mark.parametrize("frame", ["2", "-3", "100"])
def test_md_frame_past_the_end_is_refused(model_file: Path, tmp_path: Path, capsys, frame: str) -> None:
    """A 2-frame file: --frame 2 and -3 are past either end (ASE used to wrap -3 silently)."""
    path = tmp_path / "two.xyz"
    write(path, [water_molecule(), water_molecule()])
    assert visnet_main([*_md(str(path), model_file, tmp_path / "md"), "--frame", frame]) == 2
    assert f"frame {frame} is past the end of {path}: it holds 2 frame(s)" in capsys.readouterr().err
    assert not (tmp_path / "md").exists()


@pytest.mark.parametrize(("value", "message"), [("T", "energy=True"), ('"1.0 2.0"', "non-numeric energy")])
def test_extxyz_energy_that_is_not_a_number_is_refused(tmp_path: Path, value: str, message: str) -> None:
    """``energy=T`` used to read as 1.0 eV; an array energy is not a scalar."""
    path = tmp_path / "bad.extxyz"
    path.write_text(f'3\nProperties=species:S:1:pos:R:3 energy={value} pbc="F F F"\nO 0 0 0\nH 0.96 0 0\nH 0 0.96 0\n')
    with pytest.raises(ValueError, match=message) as info:
        load_atoms_data(path, cache_dir=tmp_path / "cache")
    assert str(path) in str(info.value)


@pytest.mark.parametrize("smiles", ["C @4 OnH", "CC O"])
def test_smiles_with_inner_whitespace_is_invalid(smiles: str) -> None:
    """RDKit reads everything after a space as a title ("C @4 OnH" would be methane)."""
    from visnet.structures.molecules import load_structures

    with pytest.raises(ValueError, match="invalid SMILES"):
        load_structures(smiles)


# --------------------------------------------------------------------------- train/validation duplicates


def test_structures_shared_by_train_and_validation_are_warned_about(tmp_path: Path) -> None:
    """A data file that repeats its frames: the validation split then holds training structures."""
    from visnet.data.datamodule import ViSNetDataModule

    src = np.load(shared_file("rmd17", "rmd17_ethanol_train1000.npz"))
    repeat = np.tile(np.arange(10), 4)  # 40 structures, each frame four times
    path = tmp_path / "repeated.npz"
    np.savez(path, R=src["R"][repeat], z=src["z"], E=src["E"][repeat], F=src["F"][repeat])
    module = ViSNetDataModule(str(path), num_train=30, num_val=10, num_test=0, cache_dir=str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match=r"structure\(s\) of the val split also occur in the train split"):
        module.setup("fit")


def test_distinct_splits_give_no_duplicate_warning() -> None:
    from visnet.data.duplicates import shared_structures

    data = load_atoms_data(shared_file("rmd17", "rmd17_ethanol_train1000.npz"))
    assert shared_structures(data, np.arange(0, 50), np.arange(50, 100)) == []
    assert shared_structures(data, np.arange(0, 50), np.array([7, 60])) == [(7, 7)]
