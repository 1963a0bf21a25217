"""BENCHMARKS.md and its one writer (``scripts/benchlib.py``): the file is grouped by question, every
script's section sits between its own markers, and a section written for the first time lands under
its question instead of at the end."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from conftest import REPO

spec = importlib.util.spec_from_file_location("benchlib", REPO / "scripts" / "benchlib.py")
benchlib = importlib.util.module_from_spec(spec)
sys.modules["benchlib"] = benchlib  # its dataclasses look their module up
spec.loader.exec_module(benchlib)

TEXT = (REPO / "BENCHMARKS.md").read_text()


def test_every_marker_pair_is_whole_and_unique() -> None:
    starts = re.findall(r"<!-- (\w+):start -->", TEXT)
    ends = re.findall(r"<!-- (\w+):end -->", TEXT)
    assert starts == ends and len(set(starts)) == len(starts) >= 10


def test_every_question_has_its_heading() -> None:
    """Each question ``SECTION_QUESTIONS`` places sections under is a level-1 heading of the file."""
    headings = set(re.findall(r"^# (.+)$", TEXT, re.M))
    assert set(benchlib.SECTION_QUESTIONS.values()) <= headings


def test_every_section_sits_under_its_question() -> None:
    for name, question in benchlib.SECTION_QUESTIONS.items():
        at = TEXT.find(f"<!-- {name}:start -->")
        if at >= 0:
            assert re.findall(r"^# (.+)$", TEXT[:at], re.M)[-1] == question, name


def test_no_history_left() -> None:
    """History (sessions, issue summaries) lives in CHANGELOG.md, not among the current figures."""
    assert re.search(r"session \d+|Issue 11 summary|End of session", TEXT, re.I) is None


SAMPLE = """# Benchmarks

# How fast is MD?

<!-- bench_md:start -->
old md
<!-- bench_md:end -->

# How large a system?

text under size
"""


def test_replace_section_in_place(tmp_path: Path) -> None:
    path = tmp_path / "B.md"
    path.write_text(SAMPLE)
    benchlib.replace_section(path, "bench_md", "new md")
    assert path.read_text() == SAMPLE.replace("old md", "new md")


def test_new_section_goes_under_its_question(tmp_path: Path) -> None:
    path = tmp_path / "B.md"
    path.write_text(SAMPLE)
    benchlib.replace_section(path, "bench_accel", "accel body")
    text = path.read_text()
    assert text.index("<!-- bench_md:end -->") < text.index("accel body") < text.index("# How large a system?")
    assert text.replace("<!-- bench_accel:start -->\naccel body\n<!-- bench_accel:end -->\n\n", "") == SAMPLE
    benchlib.replace_section(path, "bench_large", "large body")  # last question: at the end
    assert (
        path.read_text()
        .rstrip()
        .endswith("text under size\n\n<!-- bench_large:start -->\nlarge body\n<!-- bench_large:end -->")
    )


def test_unknown_section_is_appended(tmp_path: Path) -> None:
    path = tmp_path / "B.md"
    path.write_text(SAMPLE)
    benchlib.replace_section(path, "bench_new_thing", "body")
    assert path.read_text() == SAMPLE + "\n<!-- bench_new_thing:start -->\nbody\n<!-- bench_new_thing:end -->\n"
