"""The Python blocks of the README and the docs pages, run as printed (shared by ``test_readme.py``
and ``test_docs.py``, so test modules never import each other).

Each block runs in a fresh process in an empty folder, with deprecation warnings from the block
itself as errors, so an example never teaches an old module path. A block that continues an
earlier one or reads a file gets a prelude that makes what it assumes (a model of the block before,
a trajectory file, an exported package). Blocks that compile or export (minutes on 2 cores) are
slow.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# A docs page marks a block that runs as printed with this line right above its fence
# (docs/hooks.py renders it as nothing).
RUNNABLE = "<!-- visnet:runnable -->"

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


def python_blocks(text: str) -> list[str]:
    """Every ```python block of a Markdown text (the README: all of them run)."""
    return re.findall(r"```python\n(.*?)```", text, re.S)


def runnable_blocks(text: str) -> list[str]:
    """The ```python blocks of a docs page marked with ``RUNNABLE`` on the line above the fence."""
    return re.findall(rf"^{re.escape(RUNNABLE)}\n```python\n(.*?)```", text, re.S | re.M)


def case(block: str, name: str) -> object:
    """A pytest param (prelude, block) with its id, marked slow when the block compiles or exports."""
    prelude, slow = "", False
    for phrase, (code, is_slow) in NEEDS.items():
        if phrase in block:
            prelude, slow = prelude + code, slow or is_slow
    marks = [pytest.mark.slow] if slow else []
    return pytest.param(prelude, block, id=f"{name}-{block.splitlines()[0][:40]}", marks=marks)


def run_block(prelude: str, block: str, tmp_path: Path) -> None:
    """Run prelude + block as a script in ``tmp_path``; fail with its stderr unless it exits 0."""
    script = tmp_path / "example.py"
    script.write_text(prelude + "\n" + block)
    run_script(script, tmp_path)


def run_script(script: Path, tmp_path: Path, **env: str) -> None:
    """Run ``script`` in ``tmp_path`` with one thread, a private cache and ``env``; fail with its stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VISNET_CACHE_DIR": str(tmp_path / "cache"), **env}
    run = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning:__main__", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
