"""``visnet fit|validate|test|predict``: LightningCLI over ``ViSNetModule`` and ``ViSNetDataModule``.

Examples::

    visnet fit --config configs/rmd17_ethanol_cpu.yaml
    visnet fit --config configs/rmd17_ethanol_cpu.yaml --trainer.max_epochs 1 --data.num_train 50 \\
        --trainer.default_root_dir runs/smoke
    visnet fit --config configs/rmd17_ethanol_cpu.yaml --ckpt_path last        # resume a killed run
    visnet test --config configs/rmd17_ethanol_cpu.yaml --ckpt_path runs/rmd17_ethanol_cpu/checkpoints/best.ckpt
    visnet fit --config configs/rmd17_ethanol_cpu.yaml --print_config          # the full resolved config
    visnet fit --config configs/rmd17_ethanol_cpu.yaml --ensemble 3            # 3 seeds: runs/<name>/member_k
    visnet fit --config my_data.yaml --init default --freeze embedding        # fine-tune the bundled model

The run folder is ``trainer.default_root_dir``: ``splits.npz``, ``checkpoints/{best,last}.ckpt``,
``logs/version_N/metrics.csv`` (plus TensorBoard files when tensorboard is installed) and, at the end
of ``fit``, ``model.pt`` (the best checkpoint's weights, EMA when used, via ``visnet.save_model``) and
``learning_curves.png`` (``visnet plot <run>`` redraws it at any time). ``--ckpt_path`` of a fit that
had already ended under this command's limits (early stopping, ``max_time``, ``max_steps``) trains
nothing: one line says so (``model.pt`` exported from the best checkpoint if missing), exit code 0.

Multi-GPU / multi-node: Lightning's DDP, e.g. ``--trainer.accelerator gpu --trainer.devices 4
--trainer.strategy ddp_find_unused_parameters_true`` (``--trainer.num_nodes N`` under SLURM/torchrun);
on CPU ``--trainer.accelerator cpu --trainer.devices 2`` with the same strategy uses gloo. The
energy head's last vector projection gets no gradient (as in TorchMD-Net), hence
``find_unused_parameters``. DDP re-launches the command line, so start it as ``visnet fit ...``;
on several nodes ``srun visnet fit ...`` or ``torchrun ... -m visnet.cli fit ...`` (recipes in
docs/tutorials/multi-gpu.md). Every rank reads the data and derives the same splits and
statistics; rank 0 writes ``splits.npz`` and ``model.pt``; metrics are averaged over ranks;
``data.batch_size`` is per process: K processes with batch b train as one with batch K·b.

SIGTERM (``kill``, ``timeout``, SLURM's preemption and time limit) or SIGINT (Ctrl-C) stops a fit at
the end of the current batch, every rank at the same one (``visnet.training.stopping``): ``model.pt``
is exported from the best checkpoint marked ``"interrupted": true``, the exit code is 143 (130), and
``--ckpt_path last`` resumes from the last validation's ``last.ckpt`` (written atomically).
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from jsonargparse._link_arguments import skip_apply_links  # private module: see ViSNetCLI._given
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, EarlyStopping
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.utilities import rank_zero_only

from visnet.data.cache import atomic_savez
from visnet.data.datamodule import ViSNetDataModule
from visnet.io.model_files import load_model, read_checkpoint
from visnet.training.callbacks import ElapsedTime, RunCheckpoint
from visnet.training.ensemble import member_dir, pop_ensemble_size
from visnet.training.export import MODEL_FILE, export_best, export_model
from visnet.training.finetune import adopt_start_architecture, member_spec
from visnet.training.loops import use_epoch_end_resume
from visnet.training.module import ViSNetModule
from visnet.training.plots import plot_run
from visnet.training.preflight import (
    EndedFit,
    check_checkpoint_architecture,
    check_fit_options,
    check_resume,
    check_run_paths,
    ended_fit,
    resolve_resume,
)
from visnet.training.stopping import use_signal_stop

DEFAULT_RUN_DIR = "runs/visnet"
CHECKPOINT_DEFAULTS = {"monitor": "val_loss", "mode": "min", "save_top_k": 1, "save_last": True, "filename": "best"}
EARLY_STOPPING_DEFAULTS = {"monitor": "val_loss", "mode": "min", "patience": 150}
# ``--ensemble`` is taken off the command line before LightningCLI parses it: its help is here
FIT_HELP = {
    "fit": {
        "epilog": "--ensemble N: train N members one after the other, each with seed seed_everything + k, "
        "into <default_root_dir>/member_k (a committee for visnet md / predict). "
        "--init MODEL (= --model.init): fine-tune MODEL (a bundled name such as default, a model file or a run "
        "folder; an ensemble folder gives member k its member k). "
        "--freeze embedding|N (= --model.freeze): do not train the embeddings (and the first N layers)"
    }
}
# Fine-tuning options of `visnet fit` and the model options they stand for.
FINE_TUNE_OPTIONS = {"--init": "--model.init", "--freeze": "--model.freeze"}


def default_loggers(run_dir: str | os.PathLike) -> list[Logger]:
    """A CSV logger always; a TensorBoard logger as well when ``tensorboard`` is installed."""
    loggers: list[Logger] = [CSVLogger(run_dir, name="logs")]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return loggers
    from lightning.pytorch.loggers import TensorBoardLogger

    loggers.append(TensorBoardLogger(run_dir, name="tensorboard"))
    return loggers


class PredictionWriter(BasePredictionWriter):
    """Writes ``predict`` outputs of the test split to ``<run_dir>/predictions.npz`` (training units)."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        super().__init__(write_interval="epoch")
        self.run_dir = Path(run_dir)

    def write_on_epoch_end(
        self, trainer: Trainer, pl_module: LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        batches = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        if not batches:
            return
        arrays = {key: torch.cat([b[key] for b in batches]).numpy() for key in batches[0]}
        suffix = "" if trainer.world_size == 1 else f"_rank{trainer.global_rank}"
        path = atomic_savez(self.run_dir / f"predictions{suffix}.npz", **arrays)
        print(f"predictions written to {path}")


class ViSNetCLI(LightningCLI):
    """LightningCLI with the ViSNet defaults: checkpointing, early stopping, loggers, export,
    learning curves.

    Args:
        *args, **kwargs: LightningCLI's.
        member: index k of an ensemble member (``visnet fit --ensemble N``): the run goes to
            ``<default_root_dir>/member_k`` with seed ``seed_everything + k``; None: a plain run.
    """

    def __init__(self, *args: Any, member: int | None = None, **kwargs: Any) -> None:
        self.member = member
        super().__init__(*args, **kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self._args = args
        super().parse_arguments(parser, args)
        if self.member is None:
            return
        config = self.config.get(str(self.config.get("subcommand")), self.config)
        seed = config.get("seed_everything")
        if isinstance(seed, int) and not isinstance(seed, bool):
            config["seed_everything"] = seed + self.member
        root = config["trainer"].get("default_root_dir") or DEFAULT_RUN_DIR
        config["trainer"]["default_root_dir"] = str(member_dir(root, self.member))
        if config["checkpoint"].get("dirpath") is not None:
            config["checkpoint"]["dirpath"] = str(member_dir(config["checkpoint"]["dirpath"], self.member))
        if config["model"].get("init") is not None:
            config["model"]["init"] = member_spec(config["model"]["init"], self.member)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.target", "model.target")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults({f"checkpoint.{k}": v for k, v in CHECKPOINT_DEFAULTS.items()})
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults({f"early_stopping.{k}": v for k, v in EARLY_STOPPING_DEFAULTS.items()})

    def _run_dir(self) -> str:
        trainer = self._get(self.config, "trainer")
        return trainer.get("default_root_dir") or DEFAULT_RUN_DIR

    def before_instantiate_classes(self) -> None:
        config = self.config.get(str(self.subcommand), self.config)
        config["trainer"]["default_root_dir"] = self._run_dir()
        if config["checkpoint"].get("dirpath") is None:
            config["checkpoint"]["dirpath"] = str(Path(self._run_dir()) / "checkpoints")
        if self.subcommand == "fit":  # before anything is created or trained
            checkpoints = config["checkpoint"]["dirpath"]
            check_fit_options(config["trainer"])
            check_run_paths(self._run_dir(), checkpoints)
            check_resume(
                config.get("ckpt_path"), checkpoints, config["trainer"].get("max_epochs"), config["model"].get("init")
            )
            ended = ended_fit(config.get("ckpt_path"), checkpoints, config["trainer"])
            if ended is not None:
                self._report_ended(ended)
        if config["model"].get("init") is not None:  # fine-tuning: the start model's architecture
            adopt_start_architecture(config["model"], self._given(str(self.subcommand), "model"))

    def _report_ended(self, ended: EndedFit) -> None:
        """A resume whose fit had already ended (early stopping, ``max_time``, ``max_steps``): Lightning
        would train one more epoch or step before stopping again. Nothing is trained; ``model.pt``
        is kept, or exported from the best checkpoint when missing or marked interrupted; one line
        says so, and the command ends with exit code 0 (before any process is started)."""
        if rank_zero_only.rank == 0:
            model = Path(self._run_dir()) / MODEL_FILE
            exported = ""
            if not model.is_file() or load_model(model, device="cpu").metadata.get("interrupted", False):
                exported = f"; exported model: {export_model(ended.best, model).resolve()}"
            print(ended.message(self._run_dir()) + exported)
        raise SystemExit(0)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") in (None, True):
            kwargs["logger"] = default_loggers(self._run_dir())
        trainer = super().instantiate_trainer(**kwargs)
        use_epoch_end_resume(trainer)  # last.ckpt resumed under --trainer.max_steps starts the next epoch
        use_signal_stop(trainer)  # SIGTERM/SIGINT stop every rank at the same batch; atomic checkpoints
        return trainer

    def _parse_ckpt_path(self) -> None:
        """A ``--ckpt_path`` file that is truncated, foreign or carries pickled code fails here with a
        ValueError naming it (``read_checkpoint``, weights only), not a traceback from ``torch.load``;
        architecture options contradicting it are refused (Lightning would replace them silently).

        Lightning then copies the checkpoint's hyperparameters into the model config. A fine-tuning
        run (``--init`` given, or recorded in the checkpoint) is resumed by ``fit`` as with
        ``--ckpt_path last`` instead: nothing is copied, the command line's ``--init`` builds the
        module (the start model's architecture and energy unit; ``check_resume`` refuses a
        checkpoint and command line that disagree on fine-tuning) and the trainer then restores the
        checkpoint's weights, optimizer and loops over the start model's. ``validate``, ``test`` and
        ``predict`` copy all but ``model_hparams``: the recorded ``init`` gives the architecture and
        the unit the data are converted to (``model_hparams`` beside ``init`` is refused).
        """
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not (ckpt_path and Path(ckpt_path).is_file()):
            return
        checkpoint = read_checkpoint(Path(ckpt_path))
        check_checkpoint_architecture(subcommand, ckpt_path, checkpoint, self._given(subcommand, "model"))
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if hparams.get("init") is None and self.config[subcommand]["model"].get("init") is None:
            super()._parse_ckpt_path()
        elif subcommand != "fit":
            hparams.pop("model_hparams", None)
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)

    def _given(self, subcommand: str, section: str) -> dict[str, Any]:
        """The ``section`` options the user gave, on the command line or in config files (``--config``,
        ``--model FILE``), whatever their value: the arguments parsed again, without the defaults."""
        args = sys.argv[1:] if self._args is None else self._args
        with skip_apply_links():  # links (data.target → model.target) need their sources' defaults
            if isinstance(args, (dict, Namespace)):
                given = self.parser.parse_object(args, defaults=False, _skip_validation=True)
            else:
                given = self.parser.parse_args(args, defaults=False, _skip_validation=True)
        options = given.get(f"{subcommand}.{section}")
        return options.as_dict() if isinstance(options, Namespace) else {}

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        """Checkpoints load with ``weights_only=True`` unless ``--weights_only false`` is given explicitly
        (not left to torch's default, which ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` turns off)."""
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if "weights_only" in self._subcommand_method_arguments[subcommand] and kwargs.get("weights_only") is None:
            kwargs["weights_only"] = True
        return kwargs

    def _run_subcommand(self, subcommand: str) -> None:
        """A fit stopped by SIGTERM or SIGINT (``visnet.training.stopping``: every rank at the same
        batch, exit code 128 + the signal number: 143, 130) or by a KeyboardInterrupt Lightning
        caught (``sys.exit(1)``) skips ``after_fit``: export the best checkpoint so far anyway,
        marked ``"interrupted": true``.

        A ``--ckpt_path`` checkpoint that will be loaded over the module sets its ``restoring``: a
        fine-tune then skips the refit of its start model's energy references (the checkpoint's
        weights replace them)."""
        checkpoints = self._get(self.config, "checkpoint").get("dirpath")
        resume = resolve_resume(self._get(self.config, "ckpt_path"), checkpoints)
        self.model.restoring = resume is not None and resume.is_file()
        try:
            super()._run_subcommand(subcommand)
        except SystemExit:
            if subcommand == "fit" and self.trainer.interrupted:
                self.after_fit()
            raise

    def before_fit(self) -> None:
        ckpt_path = self._get(self.config, "ckpt_path")
        self.datamodule.fresh_run = ckpt_path is None
        self.trainer.callbacks.append(ElapsedTime())  # the wall-clock column of metrics.csv

    def before_predict(self) -> None:
        self.trainer.callbacks.append(PredictionWriter(self._run_dir()))

    def after_fit(self) -> None:
        if not self.trainer.is_global_zero:
            return
        interrupted = bool(self.trainer.interrupted)
        path = export_best(self.trainer, self._run_dir(), **({"interrupted": True} if interrupted else {}))
        if interrupted:
            print(
                "visnet fit: warning: training was interrupted; the exported model (metadata "
                '"interrupted": true) is the best checkpoint so far, not a finished run; '
                "the same command with --ckpt_path last resumes from the last validation's checkpoint",
                file=sys.stderr,
            )
        if path is None:
            print("no checkpoint was written (no validation ran?): nothing exported", file=sys.stderr)
        else:
            print(f"exported model: {path.resolve()}")
        curves = plot_run(self._run_dir())
        if curves is not None:
            print(f"learning curves: {curves.resolve()}")


def lightning_main(argv: list[str]) -> int:
    """Run ``visnet <fit|validate|test|predict> [options]``; returns the exit code.

    ``visnet fit --ensemble N ...`` trains N members one after the other (see
    ``visnet.training.ensemble``); the first failing member's exit code is returned.
    Bad input (missing keys, NaN labels, unknown targets, impossible splits, unreadable or unsafe
    checkpoints, ``--ensemble`` with another command, ...) raises a ``ValueError``, which
    ``visnet.cli.main``'s error boundary reports as ``visnet: error: ...`` with exit code 2.
    """
    size, argv = pop_ensemble_size(fine_tune_arguments(argv))
    if size is None:
        return _run_cli(argv)
    for k in range(size):
        print(f"ensemble member {k + 1}/{size}")
        code = _run_cli(argv, member=k)
        if code != 0:
            return code
    return 0


def fine_tune_arguments(argv: list[str]) -> list[str]:
    """``argv`` with ``--init MODEL`` and ``--freeze X`` (or ``--init=MODEL``) written as
    ``--model.init`` / ``--model.freeze`` at the end, so they override a config file's values.

    Raises:
        ValueError: an option without its value, or given to a command other than ``fit``.
    """
    moved, rest, i = [], [], 0
    while i < len(argv):
        name, has_value, value = argv[i].partition("=")
        if name not in FINE_TUNE_OPTIONS:
            rest.append(argv[i])
        elif has_value:
            moved += [FINE_TUNE_OPTIONS[name], value]
        elif i + 1 < len(argv):
            moved += [FINE_TUNE_OPTIONS[name], argv[i + 1]]
            i += 1
        else:
            raise ValueError(f"{name} needs a value")
        i += 1
    if moved and (not rest or rest[0] != "fit"):
        raise ValueError(f"{' and '.join(FINE_TUNE_OPTIONS)} work with `visnet fit` only")
    return rest + moved


def _run_cli(argv: list[str], member: int | None = None) -> int:
    """One LightningCLI run (``member``: ensemble member index or None); returns the exit code."""
    saved_argv = sys.argv
    sys.argv = [saved_argv[0] if saved_argv else "visnet", *argv]  # DDP re-launches sys.argv
    try:
        ViSNetCLI(
            ViSNetModule,
            ViSNetDataModule,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"default_root_dir": DEFAULT_RUN_DIR, "inference_mode": False},
            seed_everything_default=0,
            parser_kwargs={"prog": "visnet", "description": "Train / evaluate ViSNet (LightningCLI).", **FIT_HELP},
            member=member,
        )
    except SystemExit as exit_:  # jsonargparse and Lightning end with sys.exit: their code is ours
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except pickle.UnpicklingError as err:  # a checkpoint found via --ckpt_path last/best carrying code
        raise ValueError(f"checkpoint refused for safety (weights_only=True): {str(err)[:300]}") from err
    finally:
        sys.argv = saved_argv
    return 0


__all__ = ["PredictionWriter", "ViSNetCLI", "default_loggers", "fine_tune_arguments", "lightning_main"]
