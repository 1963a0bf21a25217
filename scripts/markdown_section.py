"""The one place benchmark scripts rewrite their own block of BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, start: str, end: str, section: str) -> None:
    """Replace the block from marker ``start`` to marker ``end`` in ``path`` with ``section`` (which
    carries both markers); append it when the markers are absent."""
    text = path.read_text()
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
