"""Fine-tune the bundled model on your own data (``visnet fit --init default``).

    python examples/fine_tune.py [my_data.extxyz]

The start model's architecture, weights, mean and std are kept; its per-element energy references
are refitted to the new data before the first step (so a change of level of theory, here GFN2-xTB
-> PBE, costs no training), and the data are converted to its energy unit. ``--freeze embedding``
keeps the embeddings fixed. Without an argument the example uses the shared rMD17 ethanol frames.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _settings import ETHANOL_DFT, TINY

import visnet
from visnet.cli import main as visnet_cli

data = Path(sys.argv[1]) if len(sys.argv) > 1 else ETHANOL_DFT
run = Path("runs/fine_tuned")

options = ["--init", "default", "--freeze", "embedding", "--data.path", str(data)]
options += ["--trainer.default_root_dir", str(run), "--trainer.accelerator", "cpu", "--trainer.devices", "1"]
options += ["--trainer.inference_mode", "false"]  # validation forces need autograd
options += ["--model.lr", "5e-4", "--model.lr_warmup_steps", "10"]
if TINY:
    options += ["--trainer.max_epochs", "1", "--data.num_train", "16", "--data.num_val", "4", "--data.num_test", "4"]
    options += ["--trainer.enable_progress_bar", "false"]
else:
    options += ["--trainer.max_time", "00:00:10:00", "--data.num_train", "200", "--data.num_val", "50"]
code = visnet_cli(["fit", *options])
assert code == 0, f"visnet fit exited with {code}"

model = visnet.load_model(run / "model.pt")
print("fine-tuned from:", model.metadata.get("fine_tuned_from"), "| units:", model.metadata["units"])
code = visnet_cli(["evaluate", "--model", str(run / "model.pt"), "--data", str(data), "--split", "test"])
assert code == 0, f"visnet evaluate exited with {code}"
