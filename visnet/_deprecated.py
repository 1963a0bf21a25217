"""Old module paths, kept for one release: importing one warns and gives the module at its new path.

The package was laid out in layer folders in 0.2 (see ARCHITECTURE.md). ``import visnet.calculator``
still works and returns ``visnet.inference.calculator`` itself (same objects), with a
``DeprecationWarning`` that names the new path. One finder instead of a shim file per old module
keeps the top level of the package to its few base modules.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Sequence
from typing import Any

__all__ = ["MOVED", "install"]

MOVED: dict[str, str] = {  # old module path -> new module path
    "visnet.ase_read": "visnet.structures.read",
    "visnet.atomic": "visnet.files.atomic",
    "visnet.paths": "visnet.files.paths",
    "visnet.batching": "visnet.structures.batching",
    "visnet.inputs": "visnet.structures.checks",
    "visnet.molecules": "visnet.structures.molecules",
    "visnet.bundles": "visnet.io.bundles",
    "visnet.checkpoint": "visnet.io.model_files",
    "visnet.compile": "visnet.accel.compile",
    "visnet.package_safety": "visnet.io.package_safety",
    "visnet.export": "visnet.accel.export",
    "visnet.exported_model": "visnet.accel.exported",
    "visnet.calculator": "visnet.inference.calculator",
    "visnet.committee": "visnet.inference.committee",
    "visnet.model_io": "visnet.inference.resolve",
    "visnet.predict": "visnet.prediction.predict",
    "visnet.prediction_inputs": "visnet.prediction.inputs",
    "visnet.property_models": "visnet.prediction.property_models",
    "visnet.relaxation": "visnet.prediction.relax",
    "visnet.results": "visnet.prediction.results",
    "visnet.export_cli": "visnet.cli.export",
    "visnet.predict_cli": "visnet.cli.predict",
    "visnet.dynamics.cli": "visnet.cli.md",
    "visnet.training.cli": "visnet.cli.fit",
    "visnet.training.plot_cli": "visnet.cli.plot",
}


class _CallableModule(types.ModuleType):
    """``visnet.predict`` is both the old module and the public function: importing the old module
    must not replace the function on the package, so the alias module calls through to it."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.predict(*args, **kwargs)


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old module paths of ``MOVED``; loads each as an alias of its new module."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        new = MOVED[spec.name]
        _warn_at_importer(
            f"{spec.name} has moved to {new}; import it from there (the old path goes in the next release)"
        )
        module = importlib.import_module(new)
        if spec.name == "visnet.predict":
            alias = _CallableModule(spec.name, module.__doc__)
            alias.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
            return alias
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the module is the already-imported new one."""


def _warn_at_importer(message: str) -> None:
    """A DeprecationWarning attributed to the first frame outside the import machinery (the
    user's import statement), so filters on the user's module apply."""
    frame = sys._getframe(1)
    while frame is not None and (
        frame.f_code.co_filename.startswith("<frozen importlib") or frame.f_code.co_filename == __file__
    ):
        frame = frame.f_back
    if frame is None:
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        return
    warnings.warn_explicit(
        message,
        DeprecationWarning,
        frame.f_code.co_filename,
        frame.f_lineno,
        module=frame.f_globals.get("__name__", "<unknown>"),
        registry=frame.f_globals.setdefault("__warningregistry__", {}),
    )


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder())
