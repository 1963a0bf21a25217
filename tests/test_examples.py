"""The tutorial scripts under examples/ run as printed, with tiny settings (``VISNET_EXAMPLE_TINY=1``).

Each runs in a fresh process in an empty folder (its outputs land there), with deprecation warnings
from the script itself as errors, as the README's examples. The docs include these files by snippet,
so a tutorial's code is what this test runs. Those that train a committee, start DDP processes or
export a package (minutes on 2 cores) are slow.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import REPO, SHARED_DATA
from markdown_blocks import run_script

EXAMPLES = REPO / "examples"
SLOW = {"uncertainty.py", "multi_gpu.py", "export_fast_path.py", "active_learning.py"}
# example -> (modules it needs, whether it reads the shared data)
NEEDS = {
    "md_openmm.py": (("openmm", "openmmml"), False),
    "md_torchsim.py": (("torch_sim",), False),
    "proteins.py": (("pdbfixer", "rdkit"), False),
    "predict_smiles.py": (("rdkit",), False),
    "train_own_data.py": ((), True),
    "fine_tune.py": ((), True),
    "uncertainty.py": ((), True),
    "multi_gpu.py": (("pyarrow",), True),
    "active_learning.py": (("tblite",), False),
}
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


def test_every_example_is_a_tutorial() -> None:
    """Each script is included by a docs page (a snippet), so the docs show the code this test runs."""
    pages = "\n".join(p.read_text() for p in (REPO / "docs").rglob("*.md"))
    assert len(SCRIPTS) >= 10
    assert [s for s in SCRIPTS if f'--8<-- "examples/{s}"' not in pages] == []


@pytest.mark.parametrize(
    "script", [pytest.param(s, marks=[pytest.mark.slow] if s in SLOW else [], id=s) for s in SCRIPTS]
)
def test_example_runs(script: str, tmp_path: Path) -> None:
    modules, shared = NEEDS.get(script, ((), False))
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{script} needs {module}")
    if shared and not (SHARED_DATA / "rmd17").exists():
        pytest.skip(f"{script} reads {SHARED_DATA}")
    run_script(EXAMPLES / script, tmp_path, VISNET_EXAMPLE_TINY="1", VISNET_SHARED_DATA=str(SHARED_DATA))
