"""A torch ``Dataset`` over ``AtomsData`` and the collate function building plain-dict batches.

A batch (G structures, N atoms in all) is a dict of tensors:

* ``z`` (N,) int64 | atomic numbers
* ``pos`` (N, 3) model dtype | positions, Å
* ``batch`` (N,) int64 | structure index of each atom
* ``y`` (G,) float64 | target (energy in the training unit, or the QM9 property)
* ``natoms`` (G,) int64 | atoms per structure
* ``forces`` (N, 3) model dtype | forces, training energy unit / Å (when the data has them)
* ``cell`` (G, 3, 3), ``pbc`` (G, 3) | periodic cells (when the data has them)
* ``index`` (G,) int64 | structure index in the file
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from visnet.data.structures import AtomsData


class AtomsDataset(Dataset):
    """Structures ``indices`` of ``data`` as dicts of tensors.

    Args:
        data: the full data set.
        indices: (n,) structure indices of this split (None: all).
        dtype: floating dtype of positions, forces and cells (targets stay float64).
    """

    def __init__(self, data: AtomsData, indices: np.ndarray | None = None, dtype: torch.dtype = torch.float32) -> None:
        self.data = data
        self.indices = np.arange(len(data)) if indices is None else np.asarray(indices, dtype=np.int64)
        self.dtype = dtype

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        i = int(self.indices[item])
        d = self.data
        lo, hi = int(d.ptr[i]), int(d.ptr[i + 1])
        out = {
            "z": torch.from_numpy(d.z[lo:hi]),
            "pos": torch.from_numpy(d.pos[lo:hi]).to(self.dtype),
            "y": torch.tensor(d.y[i], dtype=torch.float64),
            "index": torch.tensor(i),
        }
        if d.forces is not None:
            out["forces"] = torch.from_numpy(d.forces[lo:hi]).to(self.dtype)
        if d.cell is not None:
            out["cell"] = torch.from_numpy(d.cell[i]).to(self.dtype)
            out["pbc"] = torch.from_numpy(d.pbc[i])
        return out


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate per-atom fields, stack per-structure fields, add ``batch`` and ``natoms``."""
    natoms = torch.tensor([len(item["z"]) for item in items], dtype=torch.long)
    out = {
        "z": torch.cat([item["z"] for item in items]).long(),
        "pos": torch.cat([item["pos"] for item in items]),
        "batch": torch.repeat_interleave(torch.arange(len(items)), natoms),
        "natoms": natoms,
        "y": torch.stack([item["y"] for item in items]),
        "index": torch.stack([item["index"] for item in items]),
    }
    if "forces" in items[0]:
        out["forces"] = torch.cat([item["forces"] for item in items])
    if "cell" in items[0]:
        out["cell"] = torch.stack([item["cell"] for item in items])
        out["pbc"] = torch.stack([item["pbc"] for item in items])
    return out
