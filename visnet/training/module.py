"""``ViSNetModule``: the LightningModule that trains a ``visnet.ViSNet`` on energies+forces or a property.

Loss = ``energy_weight`` · L(target) + ``force_weight`` · L(forces) with L = MSE, L1 or Huber;
AdamW; a linear learning-rate warm-up over ``lr_warmup_steps`` optimizer steps, then
``ReduceLROnPlateau`` on ``val_loss``. Statistics of the training split (per-element references,
scale) are put into the model's buffers when training starts. Checkpoints carry the architecture
(``hyper_parameters["model_hparams"]`` = ``ViSNet.hparams``) and the metadata (units, data, level of
theory), so ``visnet.load_model("x.ckpt")`` rebuilds the model. With ``init`` the model starts from
a trained one instead (fine-tuning, ``visnet.training.finetune``).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from ase.data import chemical_symbols
from torch import Tensor

from visnet.data.qm9 import head_for_target
from visnet.data.statistics import Statistics
from visnet.io.model_files import plain_metadata
from visnet.model import ViSNet
from visnet.model.hyperparameters import STATISTICS, with_legacy_defaults
from visnet.training.compiled_step import CompiledTraining, compiled_training
from visnet.training.finetune import (
    StartModel,
    architecture_conflicts,
    check_elements,
    freeze_layers,
    load_start_model,
    parse_freeze,
    refit_energy_references,
)
from visnet.training.losses import loss_function, target_loss
from visnet.training.metrics import mae, metric_names
from visnet.training.nonfinite import NonFiniteSteps


class ViSNetModule(pl.LightningModule):
    """Trains ``self.model`` (a ``visnet.ViSNet``).

    The architecture is declared once, by ``visnet.ViSNet``'s signature: every keyword argument
    not listed below is passed on to it (``model.hidden_channels``, ``model.lmax``, ... in the
    configs; the CLI reads their types, defaults and help from ViSNet). The output key, head
    and ``derivative`` follow ``target``; mean, std and atomref are the training split's
    statistics, written into the model's buffers when training starts (never arguments).

    Args:
        target: "energy" (energies + forces) or a QM9 column; set from ``data.target`` by the CLI.
        output_head: ViSNet head; default from the target ("energy"; QM9: "scalar", "dipole" for
            mu, "spatial_extent" for r2).
        atomref_prior: initialise the per-element Atomref from the training split (least squares)
            for extensive targets.
        standardize: scale per-atom outputs by the force RMS (with forces) or the per-atom std of
            the residual target.
        loss: "mse", "l1" or "huber".
        huber_delta: the Huber loss's transition (training units).
        energy_weight: weight of the target (energy or property) loss.
        force_weight: weight of the force loss (0: train on the target only).
        lr: peak learning rate of AdamW.
        weight_decay: AdamW's decoupled weight decay.
        lr_warmup_steps: optimizer steps of linear warm-up from ~0 to ``lr``.
        lr_factor: ReduceLROnPlateau's factor (on ``val_loss``).
        lr_patience: ReduceLROnPlateau's patience, in validation runs.
        lr_min: the smallest learning rate ReduceLROnPlateau goes to.
        model_hparams: a complete ``ViSNet.hparams`` (as stored in checkpoints); replaces the
            architecture arguments when given.
        metadata: extra metadata for the exported model (units etc. come from the data).
        init: fine-tune this model (``visnet fit --init``): a bundled name ("default"), a model file
            or a run folder. Its architecture, weights, mean and std are kept (architecture
            arguments must agree with it), its per-element references are refitted to the training
            split and the data converted to its energy unit; ``atomref_prior`` and
            ``standardize`` do not apply. See ``visnet.training.finetune``.
        freeze: with ``init``: "embedding" (the embeddings) or N (the embeddings and the first N
            ViS-MP layers) are not trained (``requires_grad=False``, left out of the optimizer).
        compile: compile the force-training step (``visnet.training.compiled_step``: energy and
            forces in one ``torch.compile`` graph, the loss's backward an ordinary one); validation
            and test stay eager. Falls back to eager training, with one line, where compiling is impossible.
        **architecture: ``visnet.ViSNet`` keyword arguments (hidden_channels, num_layers, cutoff, ...).

    Attributes:
        restoring: set True before ``trainer.fit(..., ckpt_path=...)`` (or ``validate``/``test``/
            ``predict``) when a checkpoint will be loaded over the module: a fine-tune then skips
            refitting its start model's energy references, which the checkpoint's weights replace
            (``visnet fit --ckpt_path`` sets it). Left False the refit is done anyway; its one-line
            report is printed when training (or evaluation) starts, and not at all once a
            checkpoint was loaded.

    Example:
        ```python
        from visnet.cli.main import main

        # `visnet fit --config ...` from Python: trains, then writes runs/rmd17_ethanol_cpu/model.pt
        main(["fit", "--config", "configs/rmd17_ethanol_cpu.yaml", "--trainer.max_time", "00:00:05:00"])
        ```
    """

    def __init__(
        self,
        target: str = "energy",
        output_head: str | None = None,
        atomref_prior: bool = True,
        standardize: bool = True,
        loss: str = "mse",
        huber_delta: float = 0.01,
        energy_weight: float = 0.05,
        force_weight: float = 0.95,
        lr: float = 4e-4,
        weight_decay: float = 0.0,
        lr_warmup_steps: int = 1000,
        lr_factor: float = 0.8,
        lr_patience: int = 30,
        lr_min: float = 1e-7,
        model_hparams: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        init: str | None = None,
        freeze: str | int | None = None,
        compile: bool = False,
        **architecture: Any,
    ) -> None:
        super().__init__()
        # checkpoints are read back with weights_only=True: only plain values may go into them
        metadata = plain_metadata(metadata, "model.metadata") if metadata is not None else None
        self.save_hyperparameters()
        given = sorted(set(architecture) & {*STATISTICS, "output_key", "derivative"})
        if given:
            raise ValueError(f"{given} are set from the data (target and training statistics), not by arguments")
        self._start: StartModel | None = None
        try:
            if init is not None:
                self.model = self._start_model(init, target, output_head, model_hparams, architecture)
            elif model_hparams is not None:
                self.model = ViSNet(**model_hparams)
            else:
                self.model = ViSNet(
                    output_key=target,
                    output_head=output_head or head_for_target(target),
                    derivative=target == "energy",
                    mean=0.0,  # neutral until ``apply_statistics`` writes the training split's into the buffers
                    std=1.0,
                    atomref=None,
                    **architecture,
                )
        except TypeError as err:
            raise ValueError(f"invalid ViSNet hyperparameters: {err}") from None
        self.hparams["model_hparams"] = self.model.hparams
        self._freeze(freeze)
        self.loss_fn = loss_function(loss, huber_delta)
        if energy_weight < 0 or force_weight < 0 or energy_weight + force_weight == 0:
            raise ValueError(
                f"loss weights must be >= 0 and not both 0, got energy {energy_weight}, forces {force_weight}"
            )
        self._statistics_applied = False
        self.restoring = False
        self._refit_report: str | None = None  # printed at the start of training unless a checkpoint is loaded
        self._compiled: CompiledTraining | None = None
        self._nonfinite = NonFiniteSteps()
        self._batch_structures: Tensor | None = None

    def _start_model(
        self,
        init: str,
        target: str,
        output_head: str | None,
        model_hparams: dict[str, Any] | None,
        architecture: dict[str, Any],
    ) -> ViSNet:
        """The start model of a fine-tuning run (``init``), checked against the other arguments."""
        if model_hparams is not None:
            raise ValueError(f"init {init!r} and model_hparams both given: the start model's architecture is trained")
        model, self._start = load_start_model(init)
        conflicts = architecture_conflicts(model.hparams, {**architecture, "output_head": output_head})
        if conflicts:
            raise ValueError(
                f"--init {init}: the arguments contradict the start model's architecture ({'; '.join(conflicts)}); "
                "a fine-tuned model keeps its start model's architecture"
            )
        if model.output_key != target:
            raise ValueError(f"--init {init} predicts {model.output_key!r}, but the data provide target {target!r}")
        return model

    def _freeze(self, freeze: str | int | None) -> None:
        layers = parse_freeze(freeze, self.model.hparams["num_layers"])
        if layers is None:
            return
        if self._start is None:
            raise ValueError("--freeze needs --init: freezing the weights of an untrained model keeps them random")
        freeze_layers(self.model, layers)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to resume a checkpoint of another architecture, listing what differs (before any
        weight loads). A fine-tune's refitted references are replaced by the checkpoint's: not reported."""
        self._refit_report = None
        stored = (checkpoint.get("hyper_parameters") or {}).get("model_hparams")
        if not isinstance(stored, dict):
            return
        differing = architecture_differences(stored, self.model.hparams)
        if differing:
            raise ValueError(
                "cannot resume: the checkpoint was trained with other model hyperparameters ("
                + ", ".join(differing)
                + "); resume with the checkpoint's settings or start a new run in another folder"
            )

    # ------------------------------------------------------------ statistics
    def setup(self, stage: str) -> None:
        """Check the data against the model and put the training statistics into the model (once)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None or self._statistics_applied:
            return
        self._check_data(datamodule)
        if self._start is not None:
            self._fit_start_model(datamodule)
        else:
            stats = datamodule.statistics(
                self.model.max_z,
                use_forces=self._trains_forces(datamodule.has_forces),
                fit_references=self.hparams.atomref_prior,
                standardize=self.hparams.standardize,
            )
            self.apply_statistics(stats)
        metadata = datamodule.metadata()  # units: the start model's when fine-tuning
        if self._start is not None:
            metadata.update(elements=sorted(self._start.elements), fine_tuned_from=self._start.summary())
        self.hparams["metadata"] = plain_metadata({**metadata, **(self.hparams.metadata or {})})
        self.model.metadata = dict(self.hparams["metadata"])

    def configure_model(self) -> None:
        """Give the weights the trainer's precision (``trainer.precision 64-true``: float64) before a
        checkpoint is restored into them: Lightning restores ``--ckpt_path`` before it converts the
        module, so float64 weights were rounded to float32 on resume and the resumed run drifted
        from an uninterrupted one (1e-4 relative after 8 steps)."""
        if self._trainer is not None:
            self.trainer.precision_plugin.convert_module(self)

    def _fit_start_model(self, datamodule) -> None:
        """Fine-tuning: data in the start model's unit and elements, references refitted to the
        training split (see ``visnet.training.finetune``)."""
        start = self._start
        source = datamodule.load().source
        check_elements(datamodule.load().z, start, source)
        unit_before = datamodule.load().units["energy"]
        datamodule.use_energy_unit(start.energy_unit)
        if datamodule.split_indices is None:
            datamodule.setup("fit")
        self._statistics_applied = True
        if self.restoring:  # a checkpoint's weights, references included, are loaded next
            return
        train = datamodule.load().subset(datamodule.split_indices["train"])
        shift = refit_energy_references(self.model, train)
        converted = f"; data converted from {unit_before}" if unit_before != start.energy_unit else ""
        shifts = ", ".join(f"{chemical_symbols[z]} {shift[z]:+.4g}" for z in np.unique(train.z))
        self._refit_report = (
            f"fine-tuning {start.label} on {source}{converted}: per-element energy references refitted to "
            f"{len(train)} training structures (shift {shifts} {start.energy_unit})"
        )

    def _print_refit_report(self) -> None:
        """The refit's line, once, by the first process, when training or evaluation starts (after
        Lightning loaded any checkpoint, whose ``on_load_checkpoint`` drops it)."""
        if self._refit_report is not None and (self._trainer is None or self.trainer.is_global_zero):
            print(self._refit_report)
        self._refit_report = None

    def on_train_start(self) -> None:
        self._print_refit_report()

    def on_validation_start(self) -> None:
        self._print_refit_report()

    def on_test_start(self) -> None:
        self._print_refit_report()

    def on_predict_start(self) -> None:
        self._print_refit_report()

    def _check_data(self, datamodule) -> None:
        target = getattr(datamodule.hparams, "target", self.model.output_key)
        if target != self.model.output_key:
            raise ValueError(f"the data provides target {target!r} but the model predicts {self.model.output_key!r}")
        if self.model.derivative and self.hparams.force_weight > 0 and not datamodule.has_forces:
            raise ValueError(
                f"{datamodule.hparams.path} has no forces: set --model.force_weight 0 to train on energies only"
            )
        if (
            self.model.derivative
            and datamodule.has_forces
            and getattr(self.trainer.validate_loop, "inference_mode", False)
        ):
            raise ValueError("validation forces need autograd: set trainer.inference_mode: false")

    def _trains_forces(self, has_forces: bool) -> bool:
        return self.model.derivative and has_forces and self.hparams.force_weight > 0

    def apply_statistics(self, stats: Statistics) -> None:
        """Set the Atomref initial values and the model's ``mean``/``std`` buffers."""
        model = self.model
        with torch.no_grad():
            atomref = torch.as_tensor(stats.atomref, dtype=model.prior_model.initial_atomref.dtype).reshape(-1, 1)
            model.prior_model.initial_atomref.copy_(atomref)
            model.prior_model.reset_parameters()
            model.mean.fill_(stats.mean)
            model.std.fill_(stats.std)
        model.isolated_reference.refresh()
        self._statistics_applied = True

    # ---------------------------------------------------------------- steps
    def forward(self, batch: dict[str, Tensor], compute_forces: bool) -> dict[str, Tensor]:
        """Model outputs for a collated batch (see ``visnet.data.dataset``); training forces through
        the compiled step when ``compile`` is set."""
        if self.hparams.compile and self.training and compute_forces:
            if self._compiled is None:
                self._compiled = compiled_training(self.model)
            if self._compiled is not None:
                return self._compiled(batch["z"], batch["pos"], batch["batch"], batch.get("cell"), batch.get("pbc"))
        return self.model(
            batch["z"], batch["pos"], batch["batch"], batch.get("cell"), batch.get("pbc"), compute_forces=compute_forces
        )

    def _step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        has_forces = "forces" in batch
        compute_forces = self._trains_forces(has_forces) if stage == "train" else self.model.derivative and has_forces
        try:
            out = self(batch, compute_forces)
        except ValueError as err:
            raise batch_error(self.model, batch, err, self._data_source()) from None
        key = self.model.output_key
        h = self.hparams
        loss_y = target_loss(self.loss_fn, out[key], batch["y"])
        loss = h.energy_weight * loss_y
        num_graphs = batch["y"].numel()
        log = dict(on_step=stage == "train", on_epoch=True, sync_dist=True)
        self.log(f"{stage}_loss_{key}", loss_y, batch_size=num_graphs, **log)
        if compute_forces:
            loss_f = self.loss_fn(out["forces"], batch["forces"])
            loss = loss + h.force_weight * loss_f
            self.log(f"{stage}_loss_forces", loss_f, batch_size=batch["forces"].numel(), **log)
        self.log(f"{stage}_loss", loss, batch_size=num_graphs, prog_bar=True, **log)
        if stage != "train":
            self._log_errors(out, batch, stage, compute_forces)
        return loss

    def _log_errors(self, out: dict[str, Tensor], batch: dict[str, Tensor], stage: str, forces: bool) -> None:
        key = self.model.output_key
        unit = (self.hparams.metadata or {}).get("units", {}).get(key, "")
        names = metric_names(stage, key, unit)
        err_y = mae(out[key].detach(), batch["y"])
        kw = dict(on_epoch=True, sync_dist=True)
        self.log(names["y"][0], err_y, batch_size=batch["y"].numel(), prog_bar=not forces, **kw)
        if "y_paper" in names:
            self.log(names["y_paper"][0], err_y * names["y_paper"][1], batch_size=batch["y"].numel(), **kw)
        if forces:
            err_f = mae(out["forces"].detach(), batch["forces"])
            self.log(names["forces"][0], err_f, batch_size=batch["forces"].numel(), prog_bar=True, **kw)
            if "forces_paper" in names:
                self.log(
                    names["forces_paper"][0], err_f * names["forces_paper"][1], batch_size=batch["forces"].numel(), **kw
                )

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self._batch_structures = batch.get("index")
        loss = self._step(batch, "train")
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False, batch_size=1)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "test")

    def _data_source(self) -> str:
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        return str(getattr(getattr(datamodule, "hparams", None), "path", "the data"))

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        try:
            out = self(batch, self.model.derivative)
        except ValueError as err:
            raise batch_error(self.model, batch, err, self._data_source()) from None
        keep = [self.model.output_key, "forces", f"{self.model.output_key}_vector"]
        result = {k: out[k].detach().cpu() for k in keep if k in out}
        result.update(index=batch["index"].cpu(), natoms=batch["natoms"].cpu())
        return result

    def on_validation_epoch_start(self) -> None:
        self.model.isolated_reference.refresh()  # weights may have been swapped (EMA) without version bumps

    def on_test_epoch_start(self) -> None:
        self.model.isolated_reference.refresh()

    # ---------------------------------------------------------- optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        h = self.hparams
        trained = [p for p in self.parameters() if p.requires_grad]  # frozen weights (--freeze) left out
        optimizer = torch.optim.AdamW(trained, lr=h.lr, weight_decay=h.weight_decay)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=h.lr_factor, patience=h.lr_patience, min_lr=h.lr_min
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss", "interval": "epoch", "strict": False},
        }

    def on_before_optimizer_step(self, optimizer) -> None:
        """Drops a step whose gradients are not finite (``visnet.training.nonfinite``)."""
        trained = [p for group in optimizer.param_groups for p in group["params"]]
        self._nonfinite.check(trained, self._batch_structures, self.trainer.global_step)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, optimizer_closure=None) -> None:
        """Linear warm-up of the learning rate over the first ``lr_warmup_steps`` optimizer steps."""
        warmup = self.hparams.lr_warmup_steps
        step = self.trainer.global_step
        if warmup > 0 and step < warmup:
            for group in optimizer.param_groups:
                group["lr"] = self.hparams.lr * (step + 1) / warmup
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)


def batch_error(model: ViSNet, batch: dict[str, Tensor], err: ValueError, source: str) -> ValueError:
    """The model rejected a collated batch (coincident atoms, a too small cell, ...): find the
    structure at fault by evaluating the batch's structures one by one, and name it.

    Returns:
        ValueError "structure <index in the file> of <source>: <the model's message for it>"
        (atom numbers then count within that structure), or the batch's indices if none fails alone.
    """
    for g, index in enumerate(batch["index"].tolist()):
        atoms = batch["batch"] == g
        cell = batch["cell"][g] if "cell" in batch else None
        pbc = batch["pbc"][g] if "pbc" in batch else None
        try:
            with torch.no_grad():
                model(batch["z"][atoms], batch["pos"][atoms], cell=cell, pbc=pbc, compute_forces=False)
        except ValueError as inner:
            return ValueError(f"structure {index} of {source}: {inner}")
    return ValueError(f"batch of structures {batch['index'].tolist()} of {source}: {err}")


def architecture_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """ "name stored → current" for every architecture hyperparameter that differs (statistics ignored)."""
    stored = with_legacy_defaults(stored)  # checkpoints from before cutoff_type were cosine
    names = sorted((set(stored) | set(current)) - set(STATISTICS))
    return [f"{n} {stored.get(n)!r} → {current.get(n)!r}" for n in names if stored.get(n) != current.get(n)]
