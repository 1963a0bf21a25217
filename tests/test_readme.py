"""The README's Python examples run as printed (each block in a fresh process, in an empty folder),
with deprecation warnings as errors so an example never teaches an old module path.

A block that continues an earlier one or reads a file gets a prelude that makes what it assumes
(the model of the block before, a trajectory file, an exported package). Blocks that compile or
export (minutes on 2 cores) are slow.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

BLOCKS = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)

TRAJECTORY = """
from ase.build import molecule
from ase.io import write
frames = [molecule("CH3CH2OH") for _ in range(3)]
for k, atoms in enumerate(frames):
    atoms.rattle(0.02, seed=k)
write("trajectory.extxyz", frames)
write("frames.xyz", frames)
"""
PYG_MODEL = """
import visnet
from torch_geometric.nn.models import ViSNet as PyGViSNet
pyg_visnet = PyGViSNet(hidden_channels=16, num_layers=1, num_rbf=8, num_heads=2)
model = visnet.ViSNet(hidden_channels=16, num_layers=1, num_rbf=8, num_heads=2)
"""
EXPORTED = """
import visnet
visnet.export_model(visnet.load_model("default", dtype="float32"), "default.pt2")
"""
# What a block assumes, by a phrase it contains -> (prelude, slow)
NEEDS = {
    "model = visnet.ViSNet(": ("import visnet\n", False),
    "from_pyg(pyg_visnet)": (PYG_MODEL, False),
    '"trajectory.extxyz"': (TRAJECTORY, False),
    '"frames.xyz"': (TRAJECTORY, False),
    "compile_model(": ("", True),
    '"default.pt2"': (EXPORTED, True),
}


def _case(index: int) -> object:
    block = BLOCKS[index]
    prelude, slow = "", False
    for phrase, (code, is_slow) in NEEDS.items():
        if phrase in block:
            prelude, slow = prelude + code, slow or is_slow
    marks = [pytest.mark.slow] if slow else []
    return pytest.param(prelude, block, id=f"block{index}-{block.splitlines()[0][:40]}", marks=marks)


def test_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize(("prelude", "block"), [_case(i) for i in range(len(BLOCKS))])
def test_readme_example_runs(prelude: str, block: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(prelude + "\n" + block)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VISNET_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning:__main__", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
