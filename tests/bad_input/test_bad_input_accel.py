"""Bad-input matrix of the accelerated and engine paths (red-team round 3, items 11, 12, 15, 17):
compiling what cannot or need not be compiled, TorchSim states whose periodicity is ambiguous or
contradicts the model's, and the test configuration that turns our own warnings into errors.
Every case is one clear line (or one warning) and runs in seconds: no compile, no export."""

from __future__ import annotations

import warnings

import pytest
import torch
from ase import Atoms
from ase.build import bulk, graphene

import visnet
from visnet.accel.exported import ExportedViSNet

ts = pytest.importorskip("torch_sim")
from visnet.integrations.torchsim import ViSNetModel  # noqa: E402

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def engine() -> ViSNetModel:
    """A tiny fresh float64 model covering Z < 10 (no bundled weights: a fast construction)."""
    torch.manual_seed(0)
    net = visnet.ViSNet(hidden_channels=16, num_layers=1, num_rbf=8, lmax=1, num_heads=2, max_z=10, cutoff=3.0)
    return ViSNetModel(net, device="cpu", dtype="float64")


def state_of(*atoms: Atoms) -> ts.SimState:
    return ts.io.atoms_to_state(list(atoms), CPU, torch.float64)


def slab() -> Atoms:
    return graphene(size=(2, 2, 1), vacuum=5.0)  # pbc (True, True, False)


# --------------------------------------------------------------------------- compile (items 12, 15)


def test_compiling_an_exported_package_is_a_no_op_with_one_warning() -> None:
    """item 15: compile_model(load_exported(...)) raised AttributeError; the package is returned as
    it is (it is already compiled), with one warning naming it. (A stand-in package: the real one,
    through the calculator, predict and ``visnet md --compile``, is in test_compile.py, slow.)"""
    package = ExportedViSNet(None, {"dtype": "float64", "device": "cpu", "model_metadata": {}}, "x.pt2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert visnet.compile_model(package) is package
    assert [str(w.message) for w in caught] == [
        "visnet: x.pt2 is already compiled (an exported package); compile ignored"
    ]


def test_compiling_something_that_is_not_a_visnet_is_one_line() -> None:
    with pytest.raises(TypeError, match=r"^compile_model takes a visnet.ViSNet, got Linear$"):
        visnet.compile_model(torch.nn.Linear(3, 1))


# --------------------------------------------------------------------------- TorchSim pbc (item 11)


def test_slab_state_whose_pbc_torch_sim_dropped_is_refused(engine: ViSNetModel) -> None:
    """item 11: torch_sim 0.3 turns (T, T, F) into pbc=False; the slab used to be computed as a molecule."""
    with pytest.raises(ValueError, match=r"^the state has a cell but pbc=False: torch_sim 0.3 keeps one pbc flag"):
        engine(state_of(slab()))


@pytest.mark.parametrize(
    ("given", "atoms"),
    [((True, True, False), bulk("C", "diamond", a=3.57)), (False, bulk("C", "diamond", a=3.57))],
    ids=["slab-pbc-for-a-crystal", "no-pbc-for-a-crystal"],
)
def test_state_pbc_contradicting_the_model_pbc_is_refused(given: object, atoms: Atoms, engine: ViSNetModel) -> None:
    model = ViSNetModel(engine.model, device="cpu", dtype="float64", pbc=given)
    with pytest.raises(ValueError, match=r"^the state's pbc \[True\] contradicts ViSNetModel\(pbc=\["):
        model(state_of(atoms))


@pytest.mark.parametrize("pbc", [(True, False), "xy", [1, 1, 0], (True, True, 0.5)], ids=str)
def test_model_pbc_that_is_not_one_or_three_bools_is_refused(pbc: object, engine: ViSNetModel) -> None:
    with pytest.raises(ValueError, match=r"^pbc must be a bool or three bools \(one per cell vector\), got "):
        ViSNetModel(engine.model, device="cpu", dtype="float64", pbc=pbc)


def test_state_pbc_of_another_shape_is_refused(engine: ViSNetModel) -> None:
    state = state_of(bulk("C", "diamond", a=3.57))
    state.pbc = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"^the state's pbc must be one or three booleans, got shape \(2, 3\)$"):
        engine(state)


def test_molecules_without_a_cell_and_crystals_need_no_pbc_argument(engine: ViSNetModel) -> None:
    """The refusal is for the ambiguous case only: molecules (zero cell) and 3D crystals run."""
    molecule = Atoms("CO", positions=[[0.0, 0.0, 0.0], [1.1, 0.0, 0.0]])
    assert "stress" not in engine(state_of(molecule))
    assert engine(state_of(bulk("C", "diamond", a=3.57)))["stress"].shape == (1, 3, 3)


# --------------------------------------------------------------------------- warnings (item 17)


def test_our_warnings_are_errors_in_the_test_run() -> None:
    """item 17: pyproject's filterwarnings turns warnings attributed to visnet modules, and ASE's
    fixcm deprecation, into errors, so a new one fails the run instead of scrolling by."""
    from ase.md.langevin import Langevin

    atoms = Atoms("H2", positions=[[0.0, 0.0, 0.0], [0.74, 0.0, 0.0]])
    with pytest.raises(FutureWarning, match="fixcm"):
        Langevin(atoms, 1.0, temperature_K=300, friction=0.01)
    with pytest.raises(UserWarning, match="already compiled"):
        exec(  # a warning raised with a visnet module as its caller
            "import visnet\nvisnet.compile_model(package)",
            {
                "__name__": "visnet.fake_caller",
                "package": ExportedViSNet(None, {"dtype": "float64", "device": "cpu"}, "x.pt2"),
            },
        )
