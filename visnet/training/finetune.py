"""Fine-tuning (``visnet fit --init MODEL``): the start model, its energy references refitted to
the new data, and freezing.

The start model is any single-model spec the resolver takes (``visnet.inference.resolve``): a
bundled name (``"default"``), a model file, a run folder with ``model.pt``, or one member of an
ensemble run folder (``--ensemble K`` gives member k the start folder's member ``k mod M``).
Its architecture, weights, ``mean`` and ``std`` are kept; ``ViSNetModule.setup`` then, before any
optimizer step:

1. converts the data to the start model's energy unit (``ViSNetDataModule.use_energy_unit``);
2. refuses data holding an element the start model was not trained on, naming it;
3. refits the per-element energy references: least squares of (E_data − E_model) on the element
   counts of the training split, added to the model's ``Atomref`` (``refit_energy_references``).
   Energies are linear in the Atomref, so this is exact: a data set that differs from the start
   model only by per-element offsets (xTB and DFT references differ by eV per atom) is fitted
   with zero optimizer steps, and the learned network carries over unchanged.

Freezing (``--freeze embedding`` or ``--freeze N``) sets ``requires_grad=False`` on the
embeddings (element, neighbour and edge embeddings and the radial basis) and the first N ViS-MP
layers; ``ViSNetModule.configure_optimizers`` leaves them out of the optimizer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase.data import chemical_symbols

from visnet.data.dataset import AtomsDataset, collate
from visnet.data.statistics import fit_atomref
from visnet.data.structures import AtomsData
from visnet.inference.committee import committee_members
from visnet.inference.resolve import resolve_models
from visnet.io.model_files import model_metadata
from visnet.model import ViSNet

__all__ = [
    "FREEZE_EMBEDDING",
    "StartModel",
    "adopt_start_architecture",
    "architecture_conflicts",
    "check_elements",
    "freeze_layers",
    "load_start_model",
    "member_spec",
    "parse_freeze",
    "predict_energies",
    "refit_energy_references",
]

FREEZE_EMBEDDING = "embedding"
# Set from the data (target) or not architecture: never compared with a config.
_NOT_COMPARED = ("output_key", "derivative")
PREDICT_BATCH_SIZE = 32  # structures per energy-only forward pass of the refit


@dataclass(frozen=True)
class StartModel:
    """What fine-tuning keeps of its start model besides the weights.

    Attributes:
        spec: the ``--init`` value as given (a name, file or folder).
        label: the file or name the weights came from.
        energy_unit: the model's energy unit (its metadata; "eV" if it records none).
        elements: atomic numbers it was trained on.
        metadata: its metadata (level of theory, training data, ...).
    """

    spec: str
    label: str
    energy_unit: str
    elements: frozenset[int]
    metadata: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """The ``fine_tuned_from`` entry of the fine-tuned model's metadata."""
        meta = self.metadata
        return {
            "model": self.label,
            "level_of_theory": meta.get("level_of_theory", "unknown"),
            "training_data": (meta.get("training_data") or {}).get("file"),
            "fine_tuned_from": meta.get("fine_tuned_from"),
        }


def member_spec(spec: str | os.PathLike, member: int | None) -> str:
    """The start model of ensemble member ``member``: member ``k mod M`` of an ensemble run folder
    with M members; ``spec`` itself otherwise (one start model for every member)."""
    path = Path(spec)
    if member is None or not path.is_dir():
        return str(spec)
    members = committee_members(path)
    return str(members[member % len(members)])


def load_start_model(spec: str | os.PathLike | torch.nn.Module) -> tuple[ViSNet, StartModel]:
    """The trainable float32 copy of the start model and what is kept of it.

    Raises:
        ValueError: ``spec`` names several models (an ensemble folder without ``--ensemble``), an
            exported package (it has no weights), or a model that is not a potential.
        FileNotFoundError: no such file or bundled model.
    """
    label = type(spec).__name__ if isinstance(spec, torch.nn.Module) else str(spec)
    resolved = resolve_models(spec, device="cpu", dtype=torch.float32, purpose="fine-tuning (--init)")
    if len(resolved) != 1:
        raise ValueError(
            f"--init {label} names {len(resolved)} models (a committee): fine-tune each with --ensemble "
            f"{len(resolved)}, or give one member's model.pt"
        )
    item = resolved[0]
    model = item.model.eager_model
    if not isinstance(model, ViSNet):
        raise ValueError(f"--init {label}: an exported package holds no trainable weights; give its model file (.pt)")
    model = model.train().requires_grad_(True)
    metadata = model_metadata(model)
    start = StartModel(
        spec=label,
        label=item.info.label,
        energy_unit=str(metadata["units"].get("energy", "eV")),
        elements=item.info.elements,
        metadata=metadata,
    )
    return model, start


def architecture_conflicts(start: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """ "model.<name> <given> (start model: <value>)" for each given architecture option that
    differs from the start model's hyperparameters ``start`` (``output_head`` None: not a choice)."""
    names = sorted((set(start) & set(given)) - set(_NOT_COMPARED))
    if given.get("output_head") is None:
        names = [n for n in names if n != "output_head"]
    return [f"model.{n} {given[n]!r} (start model: {start[n]!r})" for n in names if given[n] != start[n]]


def adopt_start_architecture(model_config: Any, given: dict[str, Any]) -> None:
    """Put the start model's architecture into a ``visnet fit`` model config (a jsonargparse
    namespace or dict), refusing options the user gave that contradict it.

    Args:
        model_config: the ``model`` section; nothing happens unless its ``init`` is set.
        given: the ``model`` options the user gave (command line or config file), defaults left out.

    Raises:
        ValueError: naming every contradicting option, and ``model_hparams`` given with ``init``.
    """
    spec = model_config.get("init")
    if spec is None:
        return
    if model_config.get("model_hparams") is not None:
        raise ValueError(f"--init {spec} and model.model_hparams both given: the start model's architecture is trained")
    start = load_start_model(spec)[0].hparams
    conflicts = architecture_conflicts(start, given)
    if conflicts:
        raise ValueError(
            f"--init {spec}: the config contradicts the start model's architecture ({'; '.join(conflicts)}); "
            "a fine-tuned model keeps its start model's architecture: drop these options"
        )
    for name, value in start.items():
        if name in model_config and name not in _NOT_COMPARED:
            model_config[name] = value


def check_elements(z: np.ndarray, start: StartModel, source: str) -> None:
    """Refuse data holding an element the start model was not trained on.

    Args:
        z: (num_atoms,) atomic numbers of the data. start: the start model. source: the data file.

    Raises:
        ValueError: naming the missing element(s) and the start model's elements.
    """
    missing = sorted(set(np.unique(z).tolist()) - set(start.elements))
    if not missing:
        return
    names = ", ".join(f"{_symbol(e)} (Z={e})" for e in missing)
    known = ", ".join(_symbol(e) for e in sorted(start.elements))
    raise ValueError(
        f"{source} holds element {names}, which the start model {start.label} was not trained on (its elements: "
        f"{known}); fine-tuning cannot add an element: start from a model that has it, or train from scratch"
    )


def _symbol(z: int) -> str:
    return chemical_symbols[z] if 0 < z < len(chemical_symbols) else str(z)


def predict_energies(model: ViSNet, data: AtomsData, batch_size: int = PREDICT_BATCH_SIZE) -> np.ndarray:
    """(num_structures,) float64 energies of ``data`` by ``model`` (no forces, model's units).

    The model runs in eval mode on its device and dtype and is put back in its previous mode.
    """
    dataset = AtomsDataset(data, dtype=model.dtype)
    was_training = model.training
    model.eval()
    energies = []
    try:
        with torch.no_grad():
            for start in range(0, len(dataset), batch_size):
                batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
                batch = {k: v.to(model.device) for k, v in batch.items()}
                cell, pbc = batch.get("cell"), batch.get("pbc")
                out = model(batch["z"], batch["pos"], batch["batch"], cell, pbc, compute_forces=False)
                energies.append(out[model.output_key].double().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(energies)


def refit_energy_references(model: ViSNet, data: AtomsData) -> np.ndarray:
    """Shift the model's per-element references so that its energies fit ``data`` best.

    The shift is the least-squares solution of (E_data − E_model) ≈ counts · shift over the
    structures of ``data`` (``visnet.data.statistics.fit_atomref``: minimum norm for one fixed
    composition), added to ``model.prior_model`` (trainable weights and initial values).

    Args:
        model: an energy ``ViSNet``; data: the training structures in the model's energy unit.

    Returns:
        (max_z,) float64 shift per element, model's energy unit (0 for elements not in ``data``).
    """
    residual = data.y - predict_energies(model, data)
    shift = fit_atomref(replace(data, y=residual), model.max_z)
    prior = model.prior_model
    with torch.no_grad():
        table = prior.atomref.weight.double() + torch.as_tensor(shift, device=prior.atomref.weight.device)[:, None]
        prior.initial_atomref.copy_(table)
        prior.reset_parameters()
    model.isolated_reference.refresh()
    return shift


def parse_freeze(value: str | int | None, num_layers: int) -> int | None:
    """The number of ViS-MP layers ``--freeze`` names: None (nothing frozen), ``"embedding"`` → 0
    (the embeddings only), N (or "N") → the embeddings and the first N layers, 0 ≤ N ≤ num_layers.

    Raises:
        ValueError: anything else, naming the value.
    """
    if value is None:
        return None
    text = str(value).strip()
    if text == FREEZE_EMBEDDING:
        return 0
    if isinstance(value, bool) or not text.isdigit() or int(text) > num_layers:
        raise ValueError(
            f"--freeze {value!r}: expected {FREEZE_EMBEDDING!r} or a number of layers from 0 to {num_layers} "
            "(the model's num_layers)"
        )
    return int(text)


def freeze_layers(model: ViSNet, layers: int) -> list[str]:
    """Freeze (``requires_grad=False``) the embeddings and the first ``layers`` ViS-MP layers.

    Returns:
        The names of the frozen parameters (as in ``model.named_parameters()``).
    """
    rep = model.representation_model
    parts = [rep.embedding, rep.distance_expansion, rep.neighbor_embedding, rep.edge_embedding]
    for part in [*parts, *rep.vis_mp_layers[:layers]]:
        part.requires_grad_(False)
    return [name for name, p in model.named_parameters() if not p.requires_grad]
