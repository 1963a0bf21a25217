"""The state of one round of active learning: ``<out>/round_NNN/state.json``, written atomically
after each stage, so a killed run resumes at the first unfinished stage of the first unfinished round.

Stages, in order: ``sampled`` (MD ran and the frames to label are in ``selected.extxyz``),
``labelled`` (``labels.extxyz``), ``trained`` (every member's ``committee/member_k/model.pt``),
``evaluated`` (the errors on the test set, when there is one). A round that harvests no uncertain
frame is ``converged``: nothing is labelled or trained, and the run ends.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from visnet.errors import VisnetError
from visnet.files.atomic import atomic_write_text

__all__ = ["STAGES", "RoundState", "round_dir"]

STAGES = ("sampled", "labelled", "trained", "evaluated")
STATE_FILE = "state.json"


def round_dir(out: str | Path, index: int) -> Path:
    """The folder of round ``index``: ``<out>/round_000``, ``round_001``, ..."""
    return Path(out) / f"round_{index:03d}"


@dataclass
class RoundState:
    """What one round has done so far.

    Attributes:
        index: the round (0: the initial committee).
        done: the finished stages (``STAGES``), in order.
        converged: the committee MD found no uncertain frame (the run ends here).
        md_steps_done: MD steps run (fewer than asked when the MD blew up).
        md_message: why the MD stopped early, else None.
        checked_frames: frames whose committee force std was checked (0 in round 0).
        uncertain_frames: of those, frames above ``max_force_std``.
        max_force_std / mean_force_std: over the uncertain frames, eV/Å (None: none, or round 0).
        selected: frames chosen for labelling. labelled: frames labelled. failed: labelling failures.
        total_frames: labelled frames of all rounds so far (the training set of this round).
        trained: whether members were fine-tuned this round (False: too few frames, kept the last).
        members: the committee's model files after this round (trained now or kept).
        test: errors of this round's committee on the test set (``visnet.learning.reference_errors``).
    """

    index: int
    done: list[str] = field(default_factory=list)
    converged: bool = False
    md_steps_done: int = 0
    md_message: str | None = None
    checked_frames: int = 0
    uncertain_frames: int = 0
    max_force_std: float | None = None
    mean_force_std: float | None = None
    selected: int = 0
    labelled: int = 0
    failed: int = 0
    total_frames: int = 0
    trained: bool = False
    members: list[str] = field(default_factory=list)
    test: dict[str, float] = field(default_factory=dict)

    def folder(self, out: str | Path) -> Path:
        """This round's folder in the run folder ``out``."""
        return round_dir(out, self.index)

    def has(self, stage: str) -> bool:
        """Whether ``stage`` is finished."""
        return stage in self.done

    def finish(self, stage: str, out: str | Path) -> None:
        """Mark ``stage`` finished and write the state file atomically."""
        if stage not in self.done:
            self.done.append(stage)
        self.save(out)

    def save(self, out: str | Path) -> Path:
        """Write ``state.json`` of this round atomically."""
        path = self.folder(out) / STATE_FILE
        return atomic_write_text(path, json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, out: str | Path, index: int) -> RoundState:
        """The state of round ``index`` (a fresh one when the round has not started).

        Raises:
            VisnetError: the state file is unreadable (named).
        """
        path = round_dir(out, index) / STATE_FILE
        if not path.exists():
            return cls(index)
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError) as err:
            raise VisnetError(f"{path} is unreadable ({err}); delete round {index}'s folder to redo it") from None
