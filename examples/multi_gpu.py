"""Multi-GPU / multi-node training and screening (Lightning DDP), runnable on CPU processes too.

    python examples/multi_gpu.py

Training: ``visnet fit`` takes Lightning's trainer options. On one node with 4 GPUs:

    visnet fit --config configs/rmd17.yaml --trainer.accelerator gpu --trainer.devices 4 \\
        --trainer.strategy ddp_find_unused_parameters_true

and under SLURM (``srun visnet fit ...``) or torchrun (``torchrun ... -m visnet.cli fit ...``) add
``--trainer.num_nodes N`` (recipes in docs/tutorials/multi-gpu.md). Screening: ``visnet predict --input ...
--output results.csv --devices K [--num-nodes N]`` (``visnet.screen`` from Python) streams a large
collection in shards, resumable, one process per GPU. Without GPUs both run as CPU processes over
gloo, as here. DDP starts every rank by running the same command again, so each step is its own
``visnet`` command (a script that trains and then screens would run twice).
"""

from __future__ import annotations

import subprocess
import sys

from _settings import ETHANOL_DFT, REPO, TINY, pick
from ase.build import molecule
from ase.io import write


def visnet(*args: str) -> None:
    """Run ``visnet ARGS`` as its own process (as from a shell, or under srun/torchrun)."""
    subprocess.run([sys.executable, "-m", "visnet.cli", *args], check=True)


config = REPO / "configs" / ("tiny.yaml" if TINY else "rmd17_ethanol_cpu.yaml")
options = ["--config", str(config), "--data.path", str(ETHANOL_DFT), "--trainer.default_root_dir", "runs/ddp"]
options += ["--trainer.devices", "2", "--trainer.strategy", "ddp_find_unused_parameters_true"]
if TINY:
    options += ["--trainer.max_epochs", "1", "--data.num_train", "16", "--data.num_val", "4"]
    options += ["--data.num_test", "4", "--trainer.enable_progress_bar", "false"]
else:
    options += ["--trainer.max_time", "00:00:05:00"]
visnet("fit", *options)

# A collection to screen: rattled ethanol frames in a file (folders and globs of files work too).
frames = [molecule("CH3CH2OH") for _ in range(pick(2000, 8))]
for k, atoms in enumerate(frames):
    atoms.rattle(0.05, seed=k)
write("collection.extxyz", frames)
screen = ["--input", "collection.extxyz", "--output", "screened.csv", "--model", "runs/ddp/model.pt"]
visnet("predict", *screen, "--devices", "2", "--chunk-size", str(pick(256, 4)), "--no-progress")
visnet("predict", *screen, "--devices", "2", "--chunk-size", str(pick(256, 4)), "--no-progress")  # resumes: done
