"""The README (the front page): its Python example runs as printed, and its two commands are the
Makefile targets that `.ci/run` and a fresh clone use. The examples that moved into the docs pages
run in ``test_docs.py``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO
from markdown_blocks import case, python_blocks, run_block

README = (REPO / "README.md").read_text()
BLOCKS = python_blocks(README)


def test_readme_has_a_python_example() -> None:
    assert len(BLOCKS) >= 1


def test_readme_is_a_front_page() -> None:
    """At most 250 lines: everything else lives in docs/, which the README links to."""
    assert len(README.splitlines()) <= 250
    links = re.findall(r"\]\((docs/[^)#]+)", README)
    assert links and [link for link in links if not (REPO / link).is_file()] == []


def test_readme_commands_are_make_targets() -> None:
    """The README's two commands exist in the Makefile, and CI runs the README's test command."""
    commands = re.findall(r"^(make \w+)", "\n".join(re.findall(r"```bash\n(.*?)```", README, re.S)), re.M)
    assert commands[:2] == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    for command in commands:
        assert re.search(rf"^{command.split()[1]}:", makefile, re.M), command
    assert re.search(r"^make test$", (REPO / ".ci" / "run").read_text(), re.M)


@pytest.mark.parametrize(("prelude", "block"), [case(b, f"block{i}") for i, b in enumerate(BLOCKS)])
def test_readme_example_runs(prelude: str, block: str, tmp_path: Path) -> None:
    run_block(prelude, block, tmp_path)
