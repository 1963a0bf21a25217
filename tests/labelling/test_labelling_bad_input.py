"""Bad input to ``label`` and ``visnet label``: one line naming the problem, raised before any
calculation (nothing written but what the checks need), never a NaN or a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.io import write

from visnet.cli import main as visnet_main
from visnet.labelling import label, make_calculator

pytest.importorskip("tblite")


def _water(**info) -> Atoms:
    atoms = molecule("H2O")
    atoms.info.update(info)
    return atoms


def _raising_factory() -> EMT:
    raise RuntimeError("license server not reachable")


CASES = {
    "empty list": ([], {}, "holds no structures"),
    "not atoms": ([_water(), "H2O"], {}, "item 1 is a str, not ase.Atoms"),
    "nan position": ([Atoms("H2", positions=[[0, 0, 0], [np.nan, 0, 0]])], {}, r"frame 0: atoms \[1\] have non-finite"),
    "element past radon": (
        [_water(), Atoms("OU", positions=[[0, 0, 0], [0, 0, 2]])],
        {},
        r"frame 1, atom 1 is U \(Z=92\)",
    ),
    "dummy atom": ([Atoms("X", positions=[[0, 0, 0]])], {}, r"frame 0, atom 0 is X \(Z=0\)"),
    "fractional charge": ([_water()], {"charge": 0.5}, "charge 0.5 is not an integer"),
    "charge in info not a number": ([_water(charge="minus one")], {}, "info\\['charge'\\] 'minus one' is not a number"),
    "charges disagree": ([_water(charge=-1)], {"charge": 1}, "frame 0 has info\\['charge'\\] = -1 but charge 1"),
    "more charge than electrons": ([Atoms("H", positions=[[0, 0, 0]])], {"charge": 2}, "removes more electrons"),
    "impossible multiplicity": ([_water(multiplicity=2)], {}, "multiplicity 2 is impossible with 10 electrons"),
    "unknown method": ([_water()], {"method": "b3lyp"}, "unknown labelling method 'b3lyp'"),
    "spec without colon": ([_water()], {"calculator": "ase.calculators.emt"}, "not of the form module:factory"),
    "spec module missing": (
        [_water()],
        {"calculator": "no_such_module:make"},
        "module 'no_such_module' does not import",
    ),
    "spec name missing": ([_water()], {"calculator": "ase.calculators.emt:NoSuch"}, "has no attribute 'NoSuch'"),
    "spec not callable": ([_water()], {"calculator": "label_calculators:NOT_CALLABLE"}, "is a int, not a callable"),
    "calculator instance": ([_water()], {"calculator": EMT()}, "not a EMT instance"),
    "factory raises": (
        [_water()],
        {"calculator": _raising_factory},
        "could not be built: RuntimeError: license server",
    ),
    "lambda to workers": (
        [_water()] * 2,
        {"calculator": lambda: EMT(), "workers": 2},
        "cannot be sent to worker processes",
    ),
    "zero workers": ([_water()], {"workers": 0}, "workers must be a whole number >= 1"),
}


@pytest.mark.parametrize(("frames", "options", "message"), CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_line_naming_the_problem(tmp_path: Path, frames, options, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        label(frames, tmp_path / "out.extxyz", progress=False, **options)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out.extxyz").exists()


def test_files_that_cannot_be_labelled(tmp_path: Path) -> None:
    (tmp_path / "empty.xyz").write_text("")
    (tmp_path / "garbage.xyz").write_text("this is not\na structure file\n")
    with pytest.raises(FileNotFoundError, match="missing.xyz does not exist"):
        label(tmp_path / "missing.xyz", tmp_path / "out.extxyz")
    with pytest.raises(ValueError, match="empty.xyz is empty"):
        label(tmp_path / "empty.xyz", tmp_path / "out.extxyz")
    with pytest.raises(ValueError, match="cannot read structure file .*garbage.xyz"):
        label(tmp_path / "garbage.xyz", tmp_path / "out.extxyz")
    with pytest.raises(ValueError, match="must be an extended XYZ file"):
        label([_water()], tmp_path / "out.traj")
    (tmp_path / "folder.extxyz").mkdir()
    with pytest.raises(ValueError, match="folder.extxyz is a folder"):
        label([_water()], tmp_path / "folder.extxyz")


def test_missing_tblite_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tblite.ase", None)
    with pytest.raises(ImportError, match=r"pip install 'visnet\[xtb\]'"):
        make_calculator("gfn2-xtb")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--calculator", "no_such_module:make"], "module 'no_such_module' does not import"),
        (["--charge", "11"], "frame 0: charge 11 removes more electrons"),
        (["--method", "pm7"], "unknown labelling method 'pm7'"),
        (["--workers", "0"], "workers must be a whole number"),
    ],
)
def test_the_command_prints_one_line_and_exits_2(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    write(tmp_path / "in.xyz", _water())
    code = visnet_main(["label", str(tmp_path / "in.xyz"), str(tmp_path / "out.extxyz"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("visnet: error: ") and message in err and err.count("\n") == 1, err


def test_the_command_names_an_element_tblite_lacks(tmp_path: Path, capsys) -> None:
    write(tmp_path / "in.xyz", [_water(), Atoms("Fr", positions=[[0, 0, 0]])])
    code = visnet_main(["label", str(tmp_path / "in.xyz"), str(tmp_path / "out.extxyz")])
    err = capsys.readouterr().err
    assert code == 2 and "frame 1, atom 0 is Fr (Z=87): GFN-xTB (tblite) covers Z 1-86" in err, err
