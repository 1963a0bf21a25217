"""A run folder as a committee: ``runs/<name>`` written by ``visnet fit --ensemble N`` holds
``member_0/model.pt`` ... ``member_{N-1}/model.pt``; wherever a model may be given (the
calculator, ``visnet md --model``) such a folder stands for all of its members, and a plain run
folder for its one ``model.pt``."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["MEMBER_PREFIX", "MODEL_FILE", "committee_members", "expand_committee"]

MEMBER_PREFIX = "member_"
MODEL_FILE = "model.pt"
_MEMBER = re.compile(rf"{MEMBER_PREFIX}(\d+)")


def committee_members(folder: str | os.PathLike) -> list[Path]:
    """The model files of a run folder, in member order.

    Args:
        folder: an ensemble run folder (``member_k/model.pt``) or a plain run folder (``model.pt``).

    Raises:
        ValueError: a member folder without ``model.pt`` (not trained yet?), or no model at all.
    """
    folder = Path(folder)
    members = sorted((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _MEMBER.fullmatch(p.name)))
    if not members:
        if (folder / MODEL_FILE).is_file():
            return [folder / MODEL_FILE]
        raise ValueError(f"{folder} holds neither {MODEL_FILE} nor {MEMBER_PREFIX}k/{MODEL_FILE} folders")
    missing = [str(p / MODEL_FILE) for _, p in members if not (p / MODEL_FILE).is_file()]
    if missing:
        raise ValueError(f"committee {folder}: no model file {', '.join(missing)} (member not trained to the end?)")
    return [p / MODEL_FILE for _, p in members]


def expand_committee(specs: Sequence[Any]) -> list[Any]:
    """``specs`` with every folder replaced by its members' model files (``committee_members``);
    files, bundled-model names and modules are kept as they are."""
    expanded: list[Any] = []
    for spec in specs:
        is_folder = isinstance(spec, (str, os.PathLike)) and Path(spec).is_dir()
        expanded.extend(committee_members(spec) if is_folder else [spec])
    return expanded
