"""The per-round report of an active-learning run: ``<out>/report.csv`` (one row per finished
round, rewritten atomically from the rounds' states, so a rerun never duplicates a row) and
``<out>/report.png`` (test force error and labelled frames against the round)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from visnet.files.atomic import atomic_open, atomic_write_text
from visnet.learning.state import RoundState

__all__ = ["COLUMNS", "plot_report", "report_rows", "write_report"]

# Columns of report.csv: forces in meV/Å, energies in meV/atom, force std in eV/Å; fine_tuned:
# "yes" when the round fine-tuned its members, "no" when it kept the last committee (an ensemble
# given as round 0, a converged round, too few frames, or no frame added: all failed to label).
COLUMNS = (
    "round",
    "frames_added",
    "total_frames",
    "md_steps",
    "checked_frames",
    "uncertain_frames",
    "max_force_std",
    "mean_force_std",
    "label_failures",
    "fine_tuned",
    "test_force_mae_meV_per_A",
    "test_energy_mae_meV_per_atom",
)
MEV = 1000.0


def _number(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def report_rows(states: Sequence[RoundState]) -> list[dict[str, str]]:
    """One row (``COLUMNS``) per round state, as text (empty: not applicable)."""
    rows = []
    for s in states:
        force = s.test.get("force_mae")
        energy = s.test.get("energy_mae_per_atom")
        rows.append(
            {
                "round": str(s.index),
                "frames_added": str(s.labelled),
                "total_frames": str(s.total_frames),
                "md_steps": str(s.md_steps_done),
                "checked_frames": str(s.checked_frames),
                "uncertain_frames": str(s.uncertain_frames),
                "max_force_std": _number(s.max_force_std),
                "mean_force_std": _number(s.mean_force_std),
                "label_failures": str(s.failed),
                "fine_tuned": "yes" if s.trained else "no",
                "test_force_mae_meV_per_A": _number(None if force is None else force * MEV),
                "test_energy_mae_meV_per_atom": _number(None if energy is None else energy * MEV),
            }
        )
    return rows


def write_report(out: Path, states: Sequence[RoundState]) -> tuple[Path, Path]:
    """Write ``report.csv`` and ``report.png`` of the finished rounds ``states`` into ``out``."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(report_rows(states))
    table = atomic_write_text(out / "report.csv", text.getvalue())
    return table, plot_report(states, out / "report.png")


def plot_report(states: Sequence[RoundState], path: Path) -> Path:
    """Test force MAE (meV/Å; when a test set was given) and labelled frames (added, total) vs round."""
    rounds = [s.index for s in states]
    fig = Figure(figsize=(6.4, 3.6))
    frames_axis = fig.add_subplot(1, 1, 1)
    frames_axis.bar(rounds, [s.labelled for s in states], color="tab:gray", alpha=0.5, label="frames added")
    frames_axis.plot(rounds, [s.total_frames for s in states], "s--", color="tab:gray", label="labelled frames")
    frames_axis.set_xlabel("round")
    frames_axis.set_ylabel("frames")
    frames_axis.set_xticks(rounds)
    handles, labels = frames_axis.get_legend_handles_labels()
    errors = [(s.index, s.test["force_mae"] * MEV) for s in states if "force_mae" in s.test]
    if errors:
        error_axis = frames_axis.twinx()
        error_axis.plot(*zip(*errors), "o-", color="tab:red", label="test force MAE")
        error_axis.set_ylabel("test force MAE (meV/Å)", color="tab:red")
        error_axis.set_ylim(bottom=0)
        more_handles, more_labels = error_axis.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    frames_axis.legend(handles, labels, loc="upper left", fontsize=8)
    fig.suptitle("active learning")
    fig.tight_layout()
    with atomic_open(path, "wb", suffix=".png") as handle:
        fig.savefig(handle, format="png", dpi=110)
    return path
