"""``ViSNetDataModule``: one data file -> train/val/test loaders, splits and training statistics."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from torch.utils.data import DataLoader, DistributedSampler

from visnet.data.dataset import AtomsDataset, collate
from visnet.data.duplicates import warn_split_overlap
from visnet.data.loading import convert_units, load_atoms_data
from visnet.data.qm9 import check_qm9_target, is_extensive
from visnet.data.splits import data_fingerprint, load_or_make_splits, read_splits
from visnet.data.statistics import Statistics, compute_statistics
from visnet.data.structures import AtomsData
from visnet.units import canonical_unit


class ViSNetDataModule(pl.LightningDataModule):
    """Energies+forces (MD17, rMD17, any ASE file) or a QM9 property, split and batched.

    Args:
        path: data file (MD17/sGDML or rMD17 npz, the QM9 npz, or any ASE-readable file).
        target: "energy" for energy(+force) data, else a QM9 column ("U0", "mu", "alpha", "r2", ...).
        format: "auto", "md17", "qm9" or "ase".
        energy_unit: energy unit of the file if it does not say (MD17 npz: kcal/mol, ASE: eV).
        length_unit: length unit of the file if it does not say (default Å; bohr is converted).
        output_energy_unit: train in this energy unit (default: the file's; QM9 energies: eV).
        num_train, num_val, num_test: split sizes: count (int), fraction (float in (0, 1] or a
            string like "80%") or None (the rest; at most one). MD17 protocol: 950 / 50 / rest.
        seed: seed of the random split.
        splits: an existing ``splits.npz`` to use instead (keys idx_train, idx_val, idx_test).
        batch_size: training structures per batch.
        inference_batch_size: validation/test structures per batch (default ``batch_size``).
        num_workers: DataLoader worker processes.
        cache_dir: cache folder of processed ASE files (default ``~/.cache/visnet/data``).
        run_dir: where ``splits.npz`` lives (default: the trainer's ``default_root_dir``).
        index: ASE index of the frames to read (ASE files).
        energy_key, forces_key: ``atoms.info`` / ``atoms.arrays`` keys (ASE files).
        atom_energies: per-element reference energies {symbol or Z: value} in the training unit
            (e.g. free-atom energies), used instead of the least-squares fit.
        level_of_theory: recorded in the model's metadata (default: the file's ``theory`` key, or
            the frames' ``info["level_of_theory"]``).
        allow_mixed_theory: train on a file whose frames record different levels of theory
            (refused by default: their energy references differ).
    """

    def __init__(
        self,
        path: str,
        target: str = "energy",
        format: str = "auto",
        energy_unit: str | None = None,
        length_unit: str | None = None,
        output_energy_unit: str | None = None,
        num_train: int | float | str | None = 950,
        num_val: int | float | str | None = 50,
        num_test: int | float | str | None = None,
        seed: int = 0,
        splits: str | None = None,
        batch_size: int = 4,
        inference_batch_size: int | None = None,
        num_workers: int = 0,
        cache_dir: str | None = None,
        run_dir: str | None = None,
        index: str = ":",
        energy_key: str = "energy",
        forces_key: str = "forces",
        atom_energies: dict[str, float] | None = None,
        level_of_theory: str | None = None,
        allow_mixed_theory: bool = False,
    ) -> None:
        super().__init__()
        if target != "energy":
            check_qm9_target(target)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.save_hyperparameters()
        self.data: AtomsData | None = None
        self.split_indices: dict[str, np.ndarray] | None = None
        self.datasets: dict[str, AtomsDataset] = {}
        # A fresh (not resumed) fit may replace a stored splits.npz made for other settings;
        # resuming, validating and testing must use the stored one (set by the CLI).
        self.fresh_run = False

    # ------------------------------------------------------------------ loading
    def load(self) -> AtomsData:
        """The whole data file in the training units (read once)."""
        if self.data is None:
            h = self.hparams
            self.data = load_atoms_data(
                h.path,
                format=h.format,
                target=h.target,
                energy_unit=h.energy_unit,
                length_unit=h.length_unit,
                output_energy_unit=h.output_energy_unit,
                index=h.index,
                energy_key=h.energy_key,
                forces_key=h.forces_key,
                cache_dir=h.cache_dir,
                allow_mixed_theory=h.allow_mixed_theory,
            )
        return self.data

    def use_energy_unit(self, unit: str) -> None:
        """Convert the energies and forces to ``unit`` (a fine-tuned model's own unit), splits kept.

        Raises:
            ValueError: ``output_energy_unit`` was set to another unit, or ``unit`` is unknown.
        """
        unit = canonical_unit(unit, "energy")
        chosen = self.hparams.output_energy_unit
        if chosen is not None and canonical_unit(chosen, "energy") != unit:
            raise ValueError(
                f"data.output_energy_unit {chosen!r} contradicts the start model's energy unit {unit!r}: "
                "drop it (the data are converted to the model's unit)"
            )
        data = self.load()
        if data.units["energy"] == unit:
            return
        self.data = convert_units(data, unit)
        if self.split_indices is not None:
            self.datasets = {name: AtomsDataset(self.data, idx) for name, idx in self.split_indices.items()}

    def prepare_data(self) -> None:
        self.load()  # fills the cache once per node

    def resolved_run_dir(self) -> Path | None:
        if self.hparams.run_dir is not None:
            return Path(self.hparams.run_dir)
        trainer = self.trainer
        return Path(trainer.default_root_dir) if trainer is not None else None

    def setup(self, stage: str | None = None) -> None:
        """Load the data, make or reuse the splits, build the split datasets (idempotent)."""
        if self.split_indices is not None:
            return
        data = self.load()
        h = self.hparams
        fingerprint = data_fingerprint(data)
        if h.splits is not None:
            self.split_indices = read_splits(h.splits, len(data), fingerprint=fingerprint, source=data.source)
        else:
            trainer = self.trainer
            write = trainer is None or trainer.is_global_zero
            self.split_indices = load_or_make_splits(
                self.resolved_run_dir(),
                len(data),
                h.num_train,
                h.num_val,
                h.num_test,
                h.seed,
                data.source,
                write,
                replace_mismatched=self.fresh_run and stage == "fit",
                fingerprint=fingerprint,
            )
        if stage in (None, "fit"):
            for name in ("train", "val"):
                if len(self.split_indices[name]) == 0:
                    raise ValueError(
                        f"{data.source}: the {name} split is empty; set data.num_{name} > 0 (validation drives "
                        "checkpoints, early stopping and the learning-rate schedule)"
                    )
            warn_split_overlap(data, self.split_indices)
        self.datasets = {name: AtomsDataset(data, idx) for name, idx in self.split_indices.items()}

    # ---------------------------------------------------------------- statistics
    @property
    def has_forces(self) -> bool:
        return self.load().forces is not None

    def statistics(
        self, max_z: int, use_forces: bool, fit_references: bool = True, standardize: bool = True
    ) -> Statistics:
        """Atom references, mean and std from the training split only (see ``visnet.data.statistics``)."""
        if self.split_indices is None:
            self.setup("fit")
        train = self.load().subset(self.split_indices["train"])
        return compute_statistics(
            train,
            max_z,
            extensive=is_extensive(self.hparams.target),
            use_forces=use_forces,
            fit_references=fit_references,
            standardize=standardize,
            atom_energies=self._atom_energies(),
        )

    def _atom_energies(self) -> dict[int, float] | None:
        given = self.hparams.atom_energies
        if not given:
            return None
        from ase.data import atomic_numbers

        out = {}
        for key, value in given.items():
            key = str(key)
            if key.isdigit():
                out[int(key)] = float(value)
            elif key in atomic_numbers:
                out[atomic_numbers[key]] = float(value)
            else:
                raise ValueError(f"atom_energies: unknown element {key!r} (use symbols like 'H' or atomic numbers)")
        return out

    def metadata(self) -> dict[str, Any]:
        """Units, target, training data and level of theory, for the exported model."""
        data = self.load()
        h = self.hparams
        sizes = {name: int(len(idx)) for name, idx in (self.split_indices or {}).items()}
        return {
            "units": dict(data.units),
            "elements": sorted(int(z) for z in np.unique(data.z)),  # the calculator refuses others
            "target": data.target,
            "training_data": {
                "path": str(Path(h.path)),
                "file": Path(h.path).name,
                "format": h.format,
                "structures": len(data),
                "splits": sizes,
                "seed": h.seed,
                "name": data.info.get("name"),
            },
            "level_of_theory": h.level_of_theory or data.info.get("theory") or _mixed(data) or "unknown",
        }

    # -------------------------------------------------------------- dataloaders
    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        if name not in self.datasets:
            self.setup(name)
        h = self.hparams
        batch_size = h.batch_size if shuffle else (h.inference_batch_size or h.batch_size)
        return DataLoader(
            self.datasets[name],
            batch_size=batch_size,
            sampler=self._train_sampler(self.datasets[name]) if shuffle else None,
            collate_fn=collate,
            num_workers=h.num_workers,
            persistent_workers=h.num_workers > 0,
            drop_last=False,
        )

    def _train_sampler(self, dataset: AtomsDataset) -> DistributedSampler:
        """The training order: one permutation per epoch (seed ``seed_everything`` + epoch, as
        Lightning seeds its own distributed samplers), dealt round-robin to the ranks. K processes
        with ``batch_size`` b therefore see the same global batches as one process with K·b (when
        the training split is a multiple of K·b; else DistributedSampler pads it by repeating its
        first structures), and a run resumed at an epoch boundary sees the batches an uninterrupted
        run would have seen (Lightning calls ``set_epoch``)."""
        trainer = self.trainer
        world_size, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))  # set by seed_everything
        return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def _mixed(data: AtomsData) -> str | None:
    """ "mixed: A; B" for data allowed to mix levels of theory, else None."""
    levels = data.info.get("levels_of_theory")
    return "mixed: " + "; ".join(json.loads(levels)) if levels else None
