"""Which calculator labels the structures: GFN2-xTB (or GFN1-xTB) through ``tblite``, or any ASE
calculator named as ``"module:factory"`` or given as a zero-argument callable.

``make_calculator`` returns a zero-argument factory rather than a calculator so that each worker
process builds its own (calculators hold native handles that cannot be shared or pickled).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from multiprocessing.reduction import ForkingPickler

import numpy as np
from ase.calculators.calculator import Calculator
from ase.data import chemical_symbols

__all__ = [
    "METHODS",
    "TBLITE_MAX_Z",
    "CalculatorFactory",
    "ImportedFactory",
    "TbliteFactory",
    "check_picklable",
    "check_xtb_elements",
    "level_of_theory",
    "make_calculator",
]

# Method names accepted by ``label(method=...)`` (lower case) -> tblite's name of the Hamiltonian.
METHODS: dict[str, str] = {"gfn2-xtb": "GFN2-xTB", "gfn1-xtb": "GFN1-xTB"}
# tblite's GFN1/GFN2 parametrisations cover hydrogen to radon.
TBLITE_MAX_Z = 86
INSTALL_HINT = "pip install 'visnet[xtb]' (or pip install tblite)"

CalculatorFactory = Callable[[], Calculator]


@dataclass(frozen=True)
class TbliteFactory:
    """Builds a quiet ``tblite.ase.TBLite`` calculator of ``method`` (e.g. "GFN2-xTB"): energies
    in eV, forces in eV/Å, stress in eV/Å³ for periodic cells."""

    method: str

    def __call__(self) -> Calculator:
        from tblite.ase import TBLite

        return TBLite(method=self.method, verbosity=0)


@dataclass(frozen=True)
class ImportedFactory:
    """Calls ``factory`` of ``module`` (the spec ``"module:factory"``) with no arguments."""

    spec: str

    def __call__(self) -> Calculator:
        return resolve_spec(self.spec)()


def resolve_spec(spec: str) -> Callable[[], Calculator]:
    """The callable named by ``"module:factory"`` (``factory`` may be dotted: ``"pkg.mod:Cls.build"``).

    Raises:
        ValueError: the spec is malformed, its module does not import, or the name is missing or not callable.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"calculator {spec!r} is not of the form module:factory (e.g. ase.calculators.emt:EMT)")
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as err:  # any import failure of the user's module is theirs to fix
        raise ValueError(
            f"calculator {spec!r}: module {module_name!r} does not import ({type(err).__name__}: {err})"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"calculator {spec!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"calculator {spec!r}: {attr!r} is a {type(obj).__name__}, not a callable factory")
    return obj


def make_calculator(method: str = "gfn2-xtb", calculator: str | CalculatorFactory | None = None) -> CalculatorFactory:
    """A zero-argument factory of the ASE calculator that labels structures.

    Args:
        method: "gfn2-xtb" (default) or "gfn1-xtb", through tblite; used when ``calculator`` is None.
        calculator: None, a ``"module:factory"`` string (e.g. "ase.calculators.emt:EMT", or a
            function of the user's module returning a DFT calculator), or a zero-argument callable
            returning an ASE calculator. Its energies must be in eV and forces in eV/Å (ASE's units).

    Returns:
        The factory; each call builds a new calculator.

    Raises:
        ValueError: unknown method, a spec that does not import, a non-callable calculator.
        ImportError: tblite is not installed (the message says how to install it).
    """
    if calculator is None:
        return TbliteFactory(_tblite_method(method))
    if isinstance(calculator, str):
        resolve_spec(calculator)  # fail now, naming the spec, not in a worker
        return ImportedFactory(calculator)
    if isinstance(calculator, Calculator):
        raise ValueError(
            "calculator must be a zero-argument factory (e.g. lambda: EMT()) or a module:factory string, "
            f"not a {type(calculator).__name__} instance: each worker builds its own calculator"
        )
    if not callable(calculator):
        raise ValueError(
            f"calculator must be None, a module:factory string or a callable, not {type(calculator).__name__}"
        )
    return calculator


def _tblite_method(method: str) -> str:
    key = str(method).lower()
    if key not in METHODS:
        raise ValueError(
            f"unknown labelling method {method!r}; choose one of {', '.join(METHODS)} or give a calculator"
        )
    try:
        importlib.import_module("tblite.ase")
    except ImportError as err:
        raise ImportError(f"method {method!r} needs tblite ({err}); install it: {INSTALL_HINT}") from None
    return METHODS[key]


def level_of_theory(factory: CalculatorFactory) -> str:
    """The level of theory recorded with every label, e.g. "GFN2-xTB (tblite 0.8.0)" or
    "ase.calculators.emt:EMT" (a callable: its module and qualified name)."""
    if isinstance(factory, TbliteFactory):
        try:
            return f"{factory.method} (tblite {version('tblite')})"
        except PackageNotFoundError:
            return f"{factory.method} (tblite)"
    if isinstance(factory, ImportedFactory):
        return factory.spec
    module = getattr(factory, "__module__", None) or type(factory).__module__
    name = getattr(factory, "__qualname__", None) or type(factory).__qualname__
    return f"{module}:{name}"


def check_xtb_elements(numbers: np.ndarray, frame: int) -> None:
    """ValueError naming the first atom of frame ``frame`` (atomic numbers ``numbers`` (N,)) that
    tblite cannot handle (Z outside 1..86)."""
    bad = np.flatnonzero((numbers < 1) | (numbers > TBLITE_MAX_Z))
    if bad.size:
        z = int(numbers[bad[0]])
        symbol = chemical_symbols[z] if 0 <= z < len(chemical_symbols) else "?"
        raise ValueError(
            f"frame {frame}, atom {int(bad[0])} is {symbol} (Z={z}): GFN-xTB (tblite) covers Z 1-{TBLITE_MAX_Z} "
            f"(H to Rn); {bad.size} such atom(s) in this frame"
        )


def check_picklable(factory: CalculatorFactory) -> None:
    """ValueError when ``factory`` cannot be sent to worker processes (a lambda, a local function)."""
    try:
        ForkingPickler.dumps(factory)  # what a spawned worker's start-up does with it
    except Exception as err:
        raise ValueError(
            f"calculator factory {level_of_theory(factory)} cannot be sent to worker processes "
            f"({type(err).__name__}); use a module:factory string or a top-level function, or workers=1"
        ) from None
