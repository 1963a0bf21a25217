"""What an eager ViSNet is, read from its architecture, head and metadata: the descriptive part of
``visnet.model.interface.AtomisticModel`` that ``ViSNet`` inherits (the network lives in
``visnet.model.visnet``)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from visnet.model.heads import Head
from visnet.model.interface import ModelForm, declared_elements

__all__ = ["ViSNetDescription"]


class ViSNetDescription:
    """Read-only properties of a ViSNet derived from the attributes below (set by ``ViSNet``).

    Attributes:
        metadata: units, training data, ... (``load_model`` and ``from_pyg`` fill it; ``{}`` when built).
        max_z: element tables cover atomic numbers 1..max_z−1.
        output_model: the head, whose class attributes declare what the output is.
        isolated_atom_reference: the constructor's switch of that name.
        std: the buffer of the output scale (its dtype and device are the model's).
    """

    metadata: dict[str, Any]
    max_z: int
    output_model: Head
    isolated_atom_reference: bool
    std: Tensor
    _hparams: dict[str, Any]

    form: ClassVar[ModelForm] = "eager"  # the nn.Module itself runs (no compiled code)

    @property
    def hparams(self) -> dict[str, Any]:
        """The architecture: constructor arguments but mean/std/atomref (a copy; read-only)."""
        return dict(self._hparams)

    @property
    def output_key(self) -> str:
        """Name of the main output in the returned dict (e.g. "energy", "gap")."""
        return self._hparams["output_key"]

    @property
    def predicts_energy(self) -> bool:
        """A potential energy (energy head, key "energy"): only such models may drive a calculator or
        MD; property models (QM9's gap, mu, U0, trained at minima without forces) may not."""
        return self.output_model.is_energy and self.output_key == "energy"

    @property
    def per_atom_output(self) -> bool:
        """True when the main output is per atom ((N, 3) for the vector head), not per molecule."""
        return not self.output_model.reduce_per_molecule

    @property
    def vector_output(self) -> bool:
        """The head's outputs are vectors: (G, 3) per molecule (dipole) or (N, 3) per atom."""
        return self.output_model.vector_valued

    @property
    def elements(self) -> frozenset[int]:
        """Atomic numbers the model may be used for: metadata "elements", else 1..max_z−1."""
        return declared_elements(self.metadata, self.max_z)

    @property
    def uses_isolated_atom_reference(self) -> bool:
        """The head's per-atom outputs are offset by each element's isolated-atom output."""
        head = self.output_model
        return bool(self.isolated_atom_reference and head.reduce_per_molecule and head.takes_prior)

    @property
    def dtype(self) -> torch.dtype:
        """The float dtype of the weights and of the positions the call takes."""
        return self.std.dtype

    @property
    def device(self) -> torch.device:
        """Where the weights are and the call runs."""
        return self.std.device

    @property
    def eager_model(self) -> ViSNetDescription:
        """The model holding the weights: itself."""
        return self
