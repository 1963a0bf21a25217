"""The API reference (docs/reference/python-api.md, generated from docstrings) reads well: every
public name of ``visnet`` documents each argument (functions, classes: ``Args:``) or field
(dataclasses: ``Attributes:``), and the main entry points show an ``Example:``."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest

import visnet
from visnet.dynamics import MDConfig, MDResult, run_md
from visnet.labelling import label
from visnet.training.module import ViSNetModule

PUBLIC = {name: getattr(visnet, name) for name in visnet.__all__ if name != "__version__"}
PUBLIC.update(label=label, run_md=run_md, MDConfig=MDConfig, MDResult=MDResult)
WITH_EXAMPLE = ["ViSNet", "ViSNetCalculator", "load_model", "predict", "screen", "label", "explain", "run_md"]


def documented(doc: str, section: str) -> set[str]:
    """Names with an entry in a Google-style section (``a: ...``, ``a, b: ...`` and ``a / b: ...``)."""
    match = re.search(rf"^{section}:\n(.*?)(?:\n\S|\Z)", doc, re.S | re.M)
    names: set[str] = set()
    for line in match.group(1).splitlines() if match else []:
        entry = re.match(r"^    \**([\w ,/*]+):", line)
        if entry:
            names |= {n.strip().lstrip("*") for n in re.split(r"[,/]", entry.group(1))}
    return names


def expected(obj: object) -> tuple[str, list[str]]:
    if dataclasses.is_dataclass(obj):
        return "Attributes", [f.name for f in dataclasses.fields(obj)]
    target = obj.__init__ if inspect.isclass(obj) else obj
    skip = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    params = [n for n, p in inspect.signature(target).parameters.items() if n != "self" and p.kind not in skip]
    return "Args", params


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_argument_is_documented(name: str) -> None:
    obj = PUBLIC[name]
    section, names = expected(obj)
    doc = inspect.getdoc(obj) or ""
    assert doc, f"{name} has no docstring"
    assert [n for n in names if n not in documented(doc, section)] == [], f"{name}: {section} misses them"


@pytest.mark.parametrize("name", WITH_EXAMPLE)
def test_main_entry_points_have_an_example(name: str) -> None:
    doc = inspect.getdoc(PUBLIC[name])
    assert re.search(r"^Example:\n    ```python\n", doc, re.M), name


def test_fit_has_an_example() -> None:
    """``visnet fit`` trains ``ViSNetModule``: its docstring shows the call from Python."""
    assert 'main(["fit", "--config"' in inspect.getdoc(ViSNetModule)
