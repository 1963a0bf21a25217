"""``Explanation``: per-atom values of one prediction (a molecule or a trajectory), and its table."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase.data import chemical_symbols

from visnet.explain.attention import AttentionMaps

__all__ = ["Explanation"]

# What each method's values add up to (for summaries and the CSV header).
SUMS_TO = {
    "decomposition": "the predicted value (exact)",
    "readout": "the predicted value (exact)",
    "integrated_gradients": "the predicted value minus the baseline's (up to the quadrature residual)",
}


@dataclass
class Explanation:
    """Per-atom values of a model's prediction for one molecule (F = 1) or a trajectory (F frames).

    Attributes:
        name: the structure's name (file stem, molecule name or SMILES).
        property: the explained output ("energy", "U0", "gap", "mu", ...).
        method: "decomposition", "readout" or "integrated_gradients" (``visnet.explain.properties``).
        unit: unit of values, totals, baselines and relative ("eV", "D", ...).
        model: the model's (or committee members') name.
        numbers: (N,) atomic numbers.
        positions: (F, N, 3) Å.
        frames: (F,) index of each explained frame in the input (trajectories may be subsampled).
        values: (F, N) per-atom values.
        totals: (F,) the prediction (a committee's mean).
        baselines: (F,) the prediction of the baseline (integrated gradients), else None.
        residuals: (F,) Σ values − (totals − baselines), or Σ values − totals.
        relative: (F, N) values minus the model's value for each atom's element alone (readout
            and decomposition; they sum to the prediction minus the free atoms'), else None.
        force_uncertainty: (F, N) eV/Å, the norm of the committee's per-component force std, else None.
        attention: attention weights of the first frame (first committee member), else None.
        notes: what the user should know (subsampled frames, a large residual, ...).
    """

    name: str
    property: str
    method: str
    unit: str
    model: str
    numbers: np.ndarray
    positions: np.ndarray
    frames: np.ndarray
    values: np.ndarray
    totals: np.ndarray
    baselines: np.ndarray | None = None
    residuals: np.ndarray | None = None
    relative: np.ndarray | None = None
    force_uncertainty: np.ndarray | None = None
    attention: AttentionMaps | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def symbols(self) -> list[str]:
        """(N,) element symbols."""
        return [chemical_symbols[int(z)] for z in self.numbers]

    @property
    def num_frames(self) -> int:
        """F, the number of explained frames."""
        return int(self.values.shape[0])

    def quantities(self) -> dict[str, tuple[np.ndarray, str]]:
        """Every per-atom quantity: name -> ((F, N) values, unit), the explained property first."""
        out = {self.property: (self.values, self.unit)}
        if self.relative is not None:
            out[f"{self.property}_relative_to_free_atoms"] = (self.relative, self.unit)
        if self.force_uncertainty is not None:
            out["force_uncertainty"] = (self.force_uncertainty, "eV/Å")
        return out

    def picture_quantity(self) -> tuple[str, np.ndarray, str]:
        """(name, (F, N) values, unit) the pictures colour by: the values relative to the free atoms
        when there are any (absolute per-atom energies are mostly each element's own energy), else the values."""
        if self.relative is not None:
            return f"{self.property} - free atoms", self.relative, self.unit
        return self.property, self.values, self.unit

    def rows(self) -> list[dict[str, object]]:
        """The per-atom table: one row per frame, atom and quantity (frame, index, element,
        quantity, value, unit)."""
        symbols = self.symbols
        rows = []
        for name, (values, unit) in self.quantities().items():
            for f, frame in enumerate(self.frames.tolist()):
                for i, symbol in enumerate(symbols):
                    rows.append(
                        {
                            "frame": frame,
                            "index": i,
                            "element": symbol,
                            "quantity": name,
                            "value": float(values[f, i]),
                            "unit": unit,
                        }
                    )
        return rows

    def summary(self) -> str:
        """A few lines for people: what was explained, how, what the values add up to."""
        total = self.totals[0] if self.num_frames == 1 else float(np.mean(self.totals))
        what = "" if self.num_frames == 1 else f" (mean of {self.num_frames} frames)"
        lines = [
            f"{self.name}: {self.property} = {total:.6g} {self.unit}{what} by {self.model}",
            f"per-atom values: {self.method}; they add up to {SUMS_TO[self.method]}",
        ]
        if self.baselines is not None:
            lines.append(
                f"baseline (every atom given the molecule's mean embedding): {float(np.mean(self.baselines)):.6g} {self.unit}; "
                f"largest |residual| {float(np.abs(self.residuals).max()):.3g} {self.unit}"
            )
        if self.num_frames == 1:
            top = np.argsort(-np.abs(self.picture_quantity()[1][0]))[:3]
            symbols = self.symbols
            lines.append(
                "largest: " + ", ".join(f"{symbols[i]}{i} {self.picture_quantity()[1][0, i]:+.4g}" for i in top)
            )
        return "\n".join(lines + [f"note: {n}" for n in self.notes])
