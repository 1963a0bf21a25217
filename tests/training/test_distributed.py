"""Data-parallel training (Lightning DDP over gloo on CPU): K processes with batch b train exactly as
one process with batch K·b; a run with a SIGKILLed rank resumes with ``--ckpt_path last`` to the
same step and weights; the documented torchrun and SLURM (srun) launches run as written.

Why equal: the training sampler (``ViSNetDataModule._train_sampler``) draws one permutation per
epoch whatever the number of processes and deals it round-robin, so K ranks' batches k together are
the one-process batch k (32 training frames, a multiple of K·b); every ethanol frame has 9 atoms,
so the mean of the ranks' mean losses (DDP averages gradients) is the global batch's mean loss. The
runs are float64 (``--trainer.precision 64-true``): what differs is only the order of floating-point
sums (DDP's all-reduce vs one batch), ~1e-16 relative per operation; Adam divides each gradient by
its running RMS, which magnifies those differences in weights whose gradients are nearly zero, so
weights are compared to 1e-7 absolute (they move by ~1e-2 from their start in these 12 steps) and
logged losses to 1e-12 relative.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import REPO, shared_file

from visnet.data.datamodule import ViSNetDataModule

TINY = str(REPO / "configs" / "tiny.yaml")
DATA = ("rmd17", "rmd17_ethanol_train1000.npz")
EPOCHS, TRAIN, BATCH = 3, 32, 4  # two ranks x 4 = one process x 8: 4 optimizer steps per epoch
STEPS = EPOCHS * TRAIN // (2 * BATCH)
WEIGHT_ATOL = 1e-7  # float64 sums in another order, magnified by Adam's normalisation (see the docstring)
LOSS_RTOL = 1e-12
KILL_STEP = 6  # mid-way through epoch 2: last.ckpt holds step 4 (end of epoch 1)

# A callback that SIGKILLs one rank at one optimizer step (written into the test's folder and put on
# PYTHONPATH: every rank Lightning starts runs the same command line and imports it).
KILLER = """
import os, signal
from lightning.pytorch.callbacks import Callback


class KillRank(Callback):
    def __init__(self, rank: int = 1, step: int = 6) -> None:
        self.rank, self.step = rank, step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
"""


def fit_arguments(run_dir: Path, batch_size: int, *extra: str) -> list[str]:
    """``visnet fit`` arguments: the tiny config, float64, ``EPOCHS`` epochs of ``TRAIN`` frames."""
    return [
        "fit",
        "--config",
        TINY,
        "--data.path",
        str(shared_file(*DATA)),
        "--data.num_train",
        str(TRAIN),
        "--data.batch_size",
        str(batch_size),
        "--trainer.default_root_dir",
        str(run_dir),
        "--trainer.max_epochs",
        str(EPOCHS),
        "--trainer.precision",
        "64-true",
        "--trainer.strategy",
        "ddp_find_unused_parameters_true",
        "--trainer.enable_progress_bar",
        "false",
        *extra,
    ]


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """One command as its own process (DDP starts the other ranks by running the command line again)."""
    return subprocess.run(command, cwd=REPO, env=env or environment(), capture_output=True, text=True, timeout=600)


def visnet_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "visnet.cli", *args]


def last_checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def max_weight_difference(a: dict, b: dict) -> float:
    assert a["state_dict"].keys() == b["state_dict"].keys()
    return max((a["state_dict"][k].double() - b["state_dict"][k].double()).abs().max().item() for k in a["state_dict"])


def epoch_metrics(run_dir: Path, version: int = 0) -> dict[str, list[float]]:
    """Epoch-level losses of ``metrics.csv``, by column."""
    with open(run_dir / "logs" / f"version_{version}" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    keys = ("val_loss", "val_loss_energy", "val_loss_forces", "val_forces_mae", "train_loss_epoch")
    return {key: [float(r[key]) for r in rows if r.get(key)] for key in keys}


def assert_same_training(run_dir: Path, reference: Path) -> None:
    """Same step count and, to float64 reordering tolerance, the same weights as ``reference``."""
    ours, theirs = last_checkpoint(run_dir), last_checkpoint(reference)
    assert ours["global_step"] == theirs["global_step"] == STEPS
    assert max_weight_difference(ours, theirs) < WEIGHT_ATOL


# --------------------------------------------------------------------------- the sampler (fast)
def batch_indices(module: ViSNetDataModule, epoch: int) -> list[list[int]]:
    loader = module.train_dataloader()
    loader.sampler.set_epoch(epoch)  # as Lightning does at every epoch start
    return [batch["index"].tolist() for batch in loader]


def data_module(tmp_path: Path, batch_size: int, world_size: int, rank: int) -> ViSNetDataModule:
    module = ViSNetDataModule(
        str(shared_file(*DATA)), num_train=TRAIN, num_val=8, num_test=8, batch_size=batch_size, run_dir=str(tmp_path)
    )
    module.trainer = SimpleNamespace(world_size=world_size, global_rank=rank, is_global_zero=rank == 0)
    module.setup("fit")
    return module


def test_ranks_batches_together_are_the_one_process_batches(tmp_path, monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    one = data_module(tmp_path, 2 * BATCH, world_size=1, rank=0)
    ranks = [data_module(tmp_path, BATCH, world_size=2, rank=r) for r in (0, 1)]
    for epoch in (0, 1):
        global_batches = [sorted(a + b) for a, b in zip(*(batch_indices(m, epoch) for m in ranks))]
        assert global_batches == [sorted(batch) for batch in batch_indices(one, epoch)]
    assert batch_indices(one, 0) != batch_indices(one, 1)  # a new order every epoch
    assert sorted(sum(batch_indices(one, 1), [])) == sorted(one.split_indices["train"].tolist())


def test_training_order_follows_the_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")
    first = batch_indices(data_module(tmp_path, BATCH, 1, 0), 0)
    assert first == batch_indices(data_module(tmp_path, BATCH, 1, 0), 0)
    monkeypatch.setenv("PL_GLOBAL_SEED", "1")  # ensemble members (seed + k) see other orders
    assert first != batch_indices(data_module(tmp_path, BATCH, 1, 0), 0)


# ------------------------------------------------------------------- processes (slow: ~15 s each)
@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The reference: one process, batch 2·BATCH."""
    run_dir = tmp_path_factory.mktemp("one_process")
    result = run(visnet_command(*fit_arguments(run_dir, 2 * BATCH, "--trainer.devices", "1")))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_two_processes_train_as_one_with_the_same_global_batch(one_process, tmp_path):
    result = run(visnet_command(*fit_arguments(tmp_path, BATCH, "--trainer.devices", "2")))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_training(tmp_path, one_process)
    # metrics logged with sync_dist: the ranks' means averaged = the one process's means
    ours, theirs = epoch_metrics(tmp_path), epoch_metrics(one_process)
    for key, values in theirs.items():
        assert len(values) == EPOCHS, key
        np.testing.assert_allclose(ours[key], values, rtol=LOSS_RTOL, err_msg=key)
    # the same splits; rank 0 alone writes the run folder's files
    with np.load(tmp_path / "splits.npz") as a, np.load(one_process / "splits.npz") as b:
        for name in ("idx_train", "idx_val", "idx_test"):
            np.testing.assert_array_equal(a[name], b[name])
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["version_0"]
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "learning_curves.png").is_file()
    assert result.stdout.count("exported model:") == 1


@pytest.mark.slow
def test_resume_after_a_killed_rank_reaches_the_uninterrupted_run(one_process, tmp_path):
    (tmp_path / "kill_rank.py").write_text(KILLER)
    killer = f'{{"class_path": "kill_rank.KillRank", "init_args": {{"rank": 1, "step": {KILL_STEP}}}}}'
    run_dir = tmp_path / "run"
    two = ("--trainer.devices", "2")
    killed = run(
        visnet_command(*fit_arguments(run_dir, BATCH, *two, f"--trainer.callbacks+={killer}")),
        environment(PYTHONPATH=str(tmp_path)),
    )
    assert killed.returncode != 0  # rank 1 died: rank 0's next all-reduce fails and the job ends
    assert not (run_dir / "model.pt").exists()
    at_kill = last_checkpoint(run_dir)
    assert at_kill["global_step"] < KILL_STEP
    assert max_weight_difference(at_kill, last_checkpoint(one_process)) > 1e3 * WEIGHT_ATOL  # the steps left matter
    resumed = run(visnet_command(*fit_arguments(run_dir, BATCH, *two, "--ckpt_path", "last")))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training(run_dir, one_process)
    assert (run_dir / "model.pt").is_file()


@pytest.mark.slow
def test_torchrun_two_nodes_on_localhost(one_process, tmp_path):
    """The documented multi-node recipe, both "nodes" on this machine (one process each)."""
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--nnodes", "2", "--nproc-per-node", "1"]
    torchrun += ["--rdzv-backend", "c10d", "--rdzv-endpoint", "localhost:29517", "--rdzv-id", "visnet-test"]
    nodes = ("--trainer.num_nodes", "2", "--trainer.devices", "1")
    command = [*torchrun, "-m", "visnet.cli", *fit_arguments(tmp_path, BATCH, *nodes)]
    agents = [subprocess.Popen(command, cwd=REPO, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)]
    agents.append(
        subprocess.Popen(command, cwd=REPO, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    )
    outputs = [agent.communicate(timeout=600) for agent in agents]
    for agent, (_, err) in zip(agents, outputs):
        assert agent.returncode == 0, err.decode()[-3000:]
    assert_same_training(tmp_path, one_process)


@pytest.mark.slow
def test_slurm_srun_two_tasks(one_process, tmp_path):
    """What ``srun --nodes 2 --ntasks-per-node 1 visnet fit ... --trainer.num_nodes 2`` gives each task:
    SLURM's variables (Lightning's SLURMEnvironment reads rank, node and address from them)."""
    nodes = ("--trainer.num_nodes", "2", "--trainer.devices", "1")
    command = visnet_command(*fit_arguments(tmp_path, BATCH, *nodes))
    slurm = dict(SLURM_NTASKS="2", SLURM_NTASKS_PER_NODE="1", SLURM_NODELIST="localhost", SLURM_JOB_ID="4717")
    slurm.update(SLURM_JOB_NAME="visnet", SLURM_LOCALID="0")
    tasks = [
        subprocess.Popen(
            command,
            cwd=REPO,
            env=environment(**slurm, SLURM_PROCID=str(rank), SLURM_NODEID=str(rank)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for rank in (0, 1)
    ]
    outputs = [task.communicate(timeout=600) for task in tasks]
    for task, (_, err) in zip(tasks, outputs):
        assert task.returncode == 0, err.decode()[-3000:]
    assert_same_training(tmp_path, one_process)
