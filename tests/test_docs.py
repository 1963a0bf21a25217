"""The docs pages' Python blocks marked runnable (``<!-- visnet:runnable -->`` above the fence) run
as printed, each in a fresh process in an empty folder (``markdown_blocks.py``). These are the
examples that lived in the README before it became a front page; the tutorials' scripts under
``examples/`` run in ``test_examples.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO
from markdown_blocks import case, run_block, runnable_blocks

PAGES = sorted((REPO / "docs").rglob("*.md"))
BLOCKS = [
    (page.relative_to(REPO / "docs").with_suffix("").as_posix(), k, block)
    for page in PAGES
    for k, block in enumerate(runnable_blocks(page.read_text()))
]


def test_docs_have_python_examples() -> None:
    assert len(BLOCKS) >= 5


def test_every_python_block_is_runnable_or_a_snippet() -> None:
    """A ```python block either runs here or includes a tested script (``--8<-- "examples/..."``)."""
    untested = []
    for page in PAGES:
        text = page.read_text()
        fences = text.count("```python")
        snippets = text.count('```python title="examples/')
        if fences != len(runnable_blocks(text)) + snippets:
            untested.append(page.name)
    assert untested == []


@pytest.mark.parametrize(("prelude", "block"), [case(b, f"{page}-{k}") for page, k, b in BLOCKS])
def test_docs_example_runs(prelude: str, block: str, tmp_path: Path) -> None:
    run_block(prelude, block, tmp_path)
