"""The MD of a round and the frames it gives for labelling.

Round 0 samples the start model's own MD (one model: no uncertainty yet) every
``check_interval`` steps. Later rounds run the committee's MD and harvest the frames whose max
force std exceeds ``max_force_std`` (``visnet.dynamics.uncertainty``: DP-GEN's ``max_devi_f``).
Either way at most ``max_frames_per_round`` frames, spread evenly in time, are kept: neighbouring
MD frames are nearly the same structure, so labelling them all adds little.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from visnet.dynamics.runner import MDConfig, MDResult, run_md
from visnet.files.atomic import atomic_open
from visnet.learning.options import LearnOptions

__all__ = ["Sample", "committee_sample", "evenly_spaced", "initial_sample", "read_frames", "write_frames"]

SAME_POSITION = 1e-6  # Å: frames this close are the same structure (extxyz keeps 8 decimals)
MD_NAME = "md"  # output files: round_NNN/md/md_langevin.*


@dataclass
class Sample:
    """Frames chosen for labelling and what the MD found.

    Attributes:
        frames: the chosen structures (positions Å), in time order.
        steps_done: MD steps run. message: why the MD stopped early (blow-up), else None.
        checked: frames whose force std was checked. uncertain: of those, above the threshold.
        force_std: (uncertain,) max force std of each uncertain frame, eV/Å.
    """

    frames: list[Atoms]
    steps_done: int
    message: str | None
    checked: int = 0
    uncertain: int = 0
    force_std: np.ndarray | None = None


def evenly_spaced(count: int, keep: int) -> np.ndarray:
    """Indices of ``min(count, keep)`` items spread evenly over ``range(count)``, first and last included."""
    if count <= keep:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, keep)).astype(int))


def _md(options: LearnOptions, atoms: Atoms, model: Any, folder: Path, seed: int, threshold: float | None) -> MDResult:
    config = MDConfig(
        structure=options.structure,
        ensemble="langevin",
        temperature=options.temperature,
        timestep=options.timestep,
        steps=options.md_steps,
        seed=seed,
        model=model,
        accel="eager",  # the models change every round: an exported package would not pay off
        output_dir=folder,
        name=MD_NAME,
        log_interval=options.check_interval,
        traj_interval=options.check_interval,
        progress=False,
        plots=False,
        max_force_std=threshold,
    )
    return run_md(config, atoms.copy())


def _read(path: Path) -> list[Atoms]:
    import ase.io

    if not path.exists() or not path.stat().st_size:
        return []
    return ase.io.read(path, ":", format="extxyz")


def initial_sample(options: LearnOptions, atoms: Atoms, model: str, folder: Path) -> Sample:
    """Round 0: MD of the start model ``model``, frames every ``check_interval`` steps."""
    result = _md(options, atoms, model, folder, options.seed, None)
    frames = _read(result.paths.extxyz)
    chosen = [frames[i] for i in evenly_spaced(len(frames), options.max_frames_per_round)]
    return Sample(chosen, result.steps_done, result.message)


def committee_sample(
    options: LearnOptions, atoms: Atoms, members: list[Path], folder: Path, seed: int, known: list[Atoms]
) -> Sample:
    """A later round: MD of the committee ``members``, the uncertain frames harvested; frames
    equal to one of ``known`` (labelled in an earlier round, e.g. the start structure) are not chosen."""
    result = _md(options, atoms, [str(m) for m in members], folder, seed, options.max_force_std)
    harvest = _read(result.paths.uncertain)
    stds = np.array([float(f.info["max_force_std"]) for f in harvest])
    fresh = [f for f in harvest if not any(_same(f, k) for k in known)]
    chosen = [fresh[i] for i in evenly_spaced(len(fresh), options.max_frames_per_round)]
    checked = 0 if result.force_std is None else len(result.force_std[1])
    return Sample(chosen, result.steps_done, result.message, checked, len(harvest), stds)


def _same(a: Atoms, b: Atoms) -> bool:
    return (
        len(a) == len(b)
        and bool(np.array_equal(a.numbers, b.numbers))
        and bool(np.allclose(a.positions, b.positions, rtol=0.0, atol=SAME_POSITION))
    )


def read_frames(path: Path) -> list[Atoms]:
    """The frames of the extended XYZ ``path`` (none when it is missing or empty)."""
    return _read(path)


def write_frames(path: Path, frames: list[Atoms]) -> Path:
    """Write ``frames`` to the extended XYZ ``path`` atomically (positions and cell only matter)."""
    import ase.io

    with atomic_open(path, "w") as handle:
        ase.io.write(handle, frames, format="extxyz")
    return path
