"""``visnet fit --ensemble N``: N independently seeded members of one run, for a committee.

Member k (0-based) is an ordinary ``visnet fit`` run with ``seed_everything + k`` (weights
initialisation and batch order differ; the data split, set by ``data.seed``, is the same) in
``<default_root_dir>/member_k/``, which then holds its own checkpoints, logs, learning curves and
``model.pt``. Members train one after the other in one process (no DDP). The run folder itself is
a committee: ``ViSNetCalculator(model="runs/<name>")`` and ``visnet md --model runs/<name>`` load
every ``member_k/model.pt`` (``visnet.inference.committee``).
"""

from __future__ import annotations

from pathlib import Path

from visnet.inference.committee import MEMBER_PREFIX

__all__ = ["ENSEMBLE_OPTION", "member_dir", "pop_ensemble_size"]

ENSEMBLE_OPTION = "--ensemble"


def member_dir(root: str | Path, k: int) -> Path:
    """The folder of ensemble member ``k`` in the run folder ``root``."""
    return Path(root) / f"{MEMBER_PREFIX}{k}"


def _size(value: str) -> int:
    try:
        size = int(value)
    except ValueError:
        raise ValueError(f"{ENSEMBLE_OPTION} needs a whole number of members, got {value!r}") from None
    if size < 1:
        raise ValueError(f"{ENSEMBLE_OPTION} needs at least 1 member, got {size}")
    return size


def pop_ensemble_size(argv: list[str]) -> tuple[int | None, list[str]]:
    """Split ``--ensemble N`` (or ``--ensemble=N``) off a ``visnet fit`` command line.

    Args:
        argv: the command and its options, e.g. ``["fit", "--config", "c.yaml", "--ensemble", "3"]``.

    Returns:
        (N or None when absent, the remaining arguments).

    Raises:
        ValueError: N missing or not a positive integer, given twice, or with a command other than fit.
    """
    sizes, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == ENSEMBLE_OPTION:
            if i + 1 >= len(argv):
                raise ValueError(f"{ENSEMBLE_OPTION} needs a number of members")
            sizes.append(_size(argv[i + 1]))
            i += 2
            continue
        if arg.startswith(f"{ENSEMBLE_OPTION}="):
            sizes.append(_size(arg.split("=", 1)[1]))
        else:
            rest.append(arg)
        i += 1
    if not sizes:
        return None, rest
    if len(sizes) > 1:
        raise ValueError(f"{ENSEMBLE_OPTION} given {len(sizes)} times")
    if not rest or rest[0] != "fit":
        raise ValueError(f"{ENSEMBLE_OPTION} works with `visnet fit` only")
    return sizes[0], rest
