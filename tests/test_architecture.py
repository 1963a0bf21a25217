"""The house plan of ARCHITECTURE.md, checked: folders are layers and imports only run downwards,
no import circles, few modules at the top of the package, no reaching into another module's
private names, and every old module path still imports (with a DeprecationWarning naming the new one).

The layer table below is ARCHITECTURE.md's picture in code; change both together.
"""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "visnet"

# Layer of each top-level name in visnet/ (a folder or a base module): a module may import from
# its own folder and from lower layers only. Equal numbers are siblings that must not import each
# other (the workflows), except where ALLOWED_SIBLINGS says which way.
LAYERS: dict[str, int] = {
    "errors": 0,
    "units": 0,
    "devices": 0,
    "files": 0,
    "_deprecated": 0,
    "neighbors": 1,
    "structures": 1,
    "proteins": 1,
    "model": 2,
    "data": 2,
    "labelling": 2,
    "io": 3,
    "accel": 4,
    "inference": 5,
    "prediction": 6,
    "dynamics": 6,
    "training": 6,
    "integrations": 6,
    "explain": 6,
    "learning": 7,
    "cli": 8,
    "__init__": 9,
}
MAX_TOP_LEVEL_MODULES = 6


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """visnet modules that ``name`` imports (absolute and relative, also inside functions and
    TYPE_CHECKING blocks: a circle of type-only imports is still a circle for the reader)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            candidates = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c in known and c != name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def test_every_top_level_name_has_a_layer() -> None:
    names = {p.stem if p.suffix == ".py" else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    names -= {"__pycache__", "pretrained"}  # pretrained/ holds data files only
    assert names <= set(LAYERS), f"add to LAYERS and ARCHITECTURE.md: {sorted(names - set(LAYERS))}"


def test_few_modules_at_the_top_of_the_package() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_imports_only_run_downwards() -> None:
    upward = [
        f"{a} -> {b}"
        for a, targets in _graph().items()
        for b in targets
        if _layer(a) != _layer(b) and LAYERS[_layer(b)] >= LAYERS[_layer(a)]
    ]
    assert not upward, "imports that climb a layer or cross to a sibling:\n" + "\n".join(sorted(upward))


def test_no_import_circles() -> None:
    graph = _graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # a package's __init__ re-exporting its own modules is not a circle of design
    circles = [c for c in circles if not any(c[i + 1].startswith(c[i] + ".") for i in range(len(c) - 1))]
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_no_module_imports_private_names_of_another() -> None:
    offenders = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("visnet"):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private and node.module != name:
                    offenders.append(f"{name}: from {node.module} import {', '.join(private)}")
    assert not offenders, "\n".join(offenders)


def test_no_file_outside_the_repository_is_cited() -> None:
    cited = [str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py") if "DESIGN.md" in p.read_text()]
    assert not cited, f"these modules cite a file that is not in the repository: {cited}"


@pytest.mark.parametrize("old", sorted(importlib.import_module("visnet._deprecated").MOVED))
def test_old_module_paths_warn_and_give_the_new_module(old: str) -> None:
    import sys

    from visnet._deprecated import MOVED

    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    new = importlib.import_module(MOVED[old])
    assert any(issubclass(w.category, DeprecationWarning) and MOVED[old] in str(w.message) for w in caught)
    public = [n for n in vars(new) if not n.startswith("_")]
    assert all(getattr(module, n) is getattr(new, n) for n in public)


def test_old_predict_module_keeps_visnet_predict_callable() -> None:
    import visnet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        importlib.import_module("visnet.predict")
    assert callable(visnet.predict)
