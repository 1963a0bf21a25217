"""Shared by the tutorial scripts: tiny settings for CI smoke runs, and where the shared data lives.

``VISNET_EXAMPLE_TINY=1`` (what ``tests/test_examples.py`` sets) shrinks every example to seconds:
fewer steps, frames and epochs. Without it the examples run with the settings a user would start from.
"""

from __future__ import annotations

import os
from pathlib import Path

TINY = os.environ.get("VISNET_EXAMPLE_TINY") == "1"
REPO = Path(__file__).resolve().parents[1]
# Reference data next to the repository (the shared rMD17/xTB files); pass your own file instead.
SHARED_DATA = Path(os.environ.get("VISNET_SHARED_DATA", REPO.parent / "shared" / "data"))
ETHANOL_DFT = SHARED_DATA / "rmd17" / "rmd17_ethanol_train1000.extxyz"


def pick(full: int, tiny: int) -> int:
    """``full`` for a real run, ``tiny`` under ``VISNET_EXAMPLE_TINY=1``."""
    return tiny if TINY else full
