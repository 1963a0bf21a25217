"""``visnet.explain``: per-atom explanations of a prediction, for a molecule or a trajectory.

    >>> import visnet
    >>> e = visnet.explain("aspirin")                              # energy: exact per-atom terms
    >>> e.values[0].sum(), e.totals[0]                             # equal (eV)
    >>> e = visnet.explain("c1ccccc1O", model="qm9", property="gap", output_dir="gap")  # attribution + pictures

What each kind of property gets is in ``visnet.explain.properties``; the attribution of intensive
properties in ``visnet.explain.attribution``; the pictures and files in ``visnet.explain.outputs``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms

from visnet.explain.attention import attention_weights
from visnet.explain.attribution import (
    DEFAULT_STEPS,
    Attribution,
    check_steps,
    free_atom_outputs,
    integrated_gradients,
    readout_terms,
)
from visnet.explain.explanation import Explanation
from visnet.explain.properties import METHODS, PropertyModels, default_method, select_property
from visnet.inference.resolve import ResolvedModel, resolve_models
from visnet.structures.batching import relative_positions
from visnet.structures.checks import check_elements, check_geometry
from visnet.structures.molecules import load_structures

__all__ = ["MAX_FRAMES", "RESIDUAL_NOTE", "SubsampledWarning", "explain", "read_frames_to_explain"]

# Frames of a trajectory one heat map shows legibly (one row each); longer ones are subsampled.
MAX_FRAMES = 200
# Integrated-gradients residuals above this fraction of |F − F(baseline)| get a note.
RESIDUAL_NOTE = 0.01


class SubsampledWarning(UserWarning):
    """A trajectory had more frames than one picture shows; every k-th frame was explained."""


def read_frames_to_explain(structure: Any, seed: int = 0) -> tuple[list[Atoms], str]:
    """The frames of ``structure`` and its name: an ``Atoms``, a list of them (a trajectory), a file
    (every frame), a bundled molecule name or a SMILES string.

    Raises:
        ValueError: no frames, frames with different atoms, a periodic structure, bad geometry.
    """
    if isinstance(structure, Atoms):
        frames, name = [structure], str(structure.info.get("name") or structure.get_chemical_formula())
    elif isinstance(structure, (str, os.PathLike)):
        frames = load_structures(str(structure), seed=seed)
        name = (
            str(frames[0].info.get("smiles") or frames[0].info.get("name") or structure) if frames else str(structure)
        )
    elif isinstance(structure, Sequence) and all(isinstance(a, Atoms) for a in structure):
        frames, name = list(structure), (structure[0].get_chemical_formula() if structure else "trajectory")
    else:
        raise TypeError(
            f"structure must be Atoms, a list of Atoms, a file, a molecule name or SMILES; got {type(structure).__name__}"
        )
    if not frames:
        raise ValueError("the structure holds no frames")
    first = frames[0].numbers
    for k, atoms in enumerate(frames):
        check_geometry(atoms)
        if atoms.pbc.any():
            raise ValueError(
                f"frame {k} is periodic: explain draws molecules; give a structure without a periodic cell"
            )
        if not np.array_equal(atoms.numbers, first):
            raise ValueError(
                f"frame {k} has other atoms than frame 0: a trajectory must keep the same atoms in the same order"
            )
    return frames, name


def _subsample(frames: list[Atoms], max_frames: int) -> tuple[np.ndarray, str | None]:
    """Indices of the frames to explain (evenly spaced when there are more than ``max_frames``) and the note saying so."""
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if len(frames) <= max_frames:
        return np.arange(len(frames)), None
    index = np.unique(np.linspace(0, len(frames) - 1, max_frames).round().astype(int))
    note = (
        f"the trajectory has {len(frames)} frames, more than one picture shows (max_frames={max_frames}): "
        f"explained {len(index)} evenly spaced frames (about every {len(frames) / len(index):.3g}th)"
    )
    return index, note


def _eager(member: ResolvedModel) -> torch.nn.Module:
    eager = member.model.eager_model
    if eager is None:
        raise ValueError(
            f"{member.info.label}: explain reads the model's layers; give its model file (.pt), not an exported package"
        )
    return eager


def _attribute(member: ResolvedModel, atoms: Atoms, method: str, steps: int, forces: bool) -> Attribution:
    """One member's per-atom values of one frame (model units)."""
    model = _eager(member)
    z = torch.as_tensor(atoms.numbers, dtype=torch.long, device=member.device)
    pos = torch.as_tensor(relative_positions(atoms, member.units.length), dtype=member.dtype, device=member.device)
    if method == "integrated_gradients":
        return integrated_gradients(model, z, pos, member.info.output_key, steps)
    return readout_terms(model, z, pos, member.info.output_key, forces=forces)


def _free_atoms(models: PropertyModels, numbers: np.ndarray) -> np.ndarray:
    """(N,) the committee's mean value for each atom's element alone (model units)."""
    elements = sorted({int(z) for z in numbers})
    tables = [free_atom_outputs(_eager(m), elements, m.info.output_key) for m in models.members]
    return np.array([np.mean([t[int(z)] for t in tables]) for z in numbers])


def _check_method(models: PropertyModels, method: str | None) -> str:
    method = method or default_method(models)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "decomposition" and not models.is_energy:
        raise ValueError(
            f"method 'decomposition' is for energies; {models.name!r} is not an energy: use 'readout' or 'integrated_gradients'"
        )
    return method


def explain(
    structure: Any,
    model: Any = "default",
    property: str | None = None,
    *,
    method: str | None = None,
    steps: int = DEFAULT_STEPS,
    attention: bool = True,
    max_frames: int = MAX_FRAMES,
    output_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float64",
    seed: int = 0,
    trust_package: bool = False,
) -> Explanation:
    """Per-atom explanation of a model's prediction for one molecule or a trajectory.

    Args:
        structure: an ``ase.Atoms``, a list of them (a trajectory of one molecule), a file
            (every frame), a bundled molecule name ("aspirin") or a SMILES string (RDKit 3D, ``seed``).
        model: a model file, "default", a bundle ("qm9"), a run folder or list (a committee), a ViSNet.
        property: the output to explain ("energy", "U0", "gap", "homo", "lumo", "mu", ...); None:
            the models' one property (a bundle needs one named).
        method: "decomposition" (energies: the exact per-atom energies), "readout" (the readout's
            per-atom terms of other extensive properties) or "integrated_gradients" (intensive
            properties: HOMO, LUMO, gap, mu); None chooses by the property.
        steps: quadrature points of integrated gradients.
        seed: RDKit embedding seed for a SMILES ``structure`` (same seed, same geometry).
        attention: also return the attention weights of every layer (first frame).
        max_frames: trajectories with more frames are subsampled evenly to this many (with a
            ``SubsampledWarning`` and a note).
        output_dir: also write the CSV and pictures there (``visnet.explain.outputs.write_explanation``).
        device: where the models run ("cpu", "cuda"; None: CUDA when available).
        dtype: the models' precision, "float64" (default) or "float32".
        trust_package: as ``visnet.predict`` (exported packages are refused here anyway: explain needs the layers).

    Returns:
        ``Explanation``: values (F, N) in ``unit`` (energies eV, dipoles D), totals (F,), for
        committees ``force_uncertainty`` (F, N) eV/Å, ``attention``, ``notes``.

    Raises:
        ValueError: a property the model does not predict (the message lists those it does), an
            element the model does not cover (named), a periodic structure, frames with different atoms.

    Example:
        ```python
        import visnet

        e = visnet.explain("CCO")            # exact per-atom energies (eV) of the default model
        print(e.values[0], e.totals[0])      # (N,) values that sum to the energy
        e = visnet.explain("c1ccccc1O", model="qm9", property="gap", output_dir="phenol_gap")
        ```
    """
    check_steps(steps)
    frames, name = read_frames_to_explain(structure, seed)
    index, note = _subsample(frames, max_frames)
    frames = [frames[k] for k in index]
    models = select_property(resolve_models(model, device=device, dtype=dtype, trust_package=trust_package), property)
    check_elements(frames[0].numbers, models.elements)
    method = _check_method(models, method)
    committee_forces = len(models.members) > 1 and models.has_forces and method != "integrated_gradients"
    per_frame = [[_attribute(m, atoms, method, steps, committee_forces) for m in models.members] for atoms in frames]
    explanation = _collect(name, models, method, frames, index, per_frame, committee_forces)
    if attention:
        first = models.members[0]
        z = torch.as_tensor(frames[0].numbers, dtype=torch.long, device=first.device)
        pos = torch.as_tensor(relative_positions(frames[0], first.units.length), dtype=first.dtype, device=first.device)
        explanation.attention = attention_weights(_eager(first), z, pos, first.units.length)
    if note:
        explanation.notes.append(note)
        warnings.warn(note, SubsampledWarning, stacklevel=2)
    if output_dir is not None:
        from visnet.explain.outputs import write_explanation

        write_explanation(explanation, output_dir)
    return explanation


def _collect(
    name: str,
    models: PropertyModels,
    method: str,
    frames: list[Atoms],
    index: np.ndarray,
    per_frame: list[list[Attribution]],
    committee_forces: bool,
) -> Explanation:
    """The members' attributions of every frame as one ``Explanation`` (committee means, reporting units)."""
    f = models.factor
    values = np.array([np.mean([a.values for a in frame], axis=0) for frame in per_frame]) * f
    totals = np.array([np.mean([a.total for a in frame]) for frame in per_frame]) * f
    residuals = np.array([np.mean([a.residual for a in frame]) for frame in per_frame]) * f
    explanation = Explanation(
        name=name,
        property=models.name,
        method=method,
        unit=models.unit,
        model=models.label,
        numbers=np.asarray(frames[0].numbers),
        positions=np.stack([a.positions for a in frames]),
        frames=index,
        values=values,
        totals=totals,
        residuals=residuals,
    )
    if method == "integrated_gradients":
        explanation.baselines = np.array([np.mean([a.baseline for a in frame]) for frame in per_frame]) * f
        spread = np.abs(totals - explanation.baselines)
        worst = float(np.max(np.abs(residuals) / np.maximum(spread, 1e-12)))
        if worst > RESIDUAL_NOTE:
            explanation.notes.append(
                f"integrated gradients: the attributions miss F − F(baseline) by up to {100 * worst:.2g} %; "
                "more steps (--steps) make the quadrature finer"
            )
    else:
        explanation.relative = values - _free_atoms(models, explanation.numbers) * f
    if committee_forces:
        length = models.members[0].units.length
        forces = [np.stack([a.forces for a in frame]) * f / length for frame in per_frame]  # (K, N, 3) eV/Å
        explanation.force_uncertainty = np.array([np.sqrt((fk.std(axis=0) ** 2).sum(axis=-1)) for fk in forces])
    return explanation
