"""Train a ViSNet force field on your own DFT data (extended XYZ with energies and forces).

    python examples/train_own_data.py [my_data.extxyz]

Any ASE-readable file with energies and forces works (extended XYZ, ASE db; eV and eV/Å unless
``--data.energy_unit`` says otherwise). Without an argument the example trains on the revised-MD17
ethanol frames (PBE/def2-SVP) of the shared data folder. The run folder gets ``model.pt``,
checkpoints, ``metrics.csv`` and learning curves.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _settings import ETHANOL_DFT, REPO, TINY, pick
from ase.io import read

import visnet
from visnet.cli import main as visnet_cli

data = Path(sys.argv[1]) if len(sys.argv) > 1 else ETHANOL_DFT
run = Path("runs/own_data")

# 1. Train: the CPU-budget config (14 minutes) with our data file; any key can be overridden.
config = REPO / "configs" / ("tiny.yaml" if TINY else "rmd17_ethanol_cpu.yaml")
options = ["--config", str(config), "--data.path", str(data), "--trainer.default_root_dir", str(run)]
if TINY:
    options += ["--trainer.max_epochs", "1", "--data.num_train", "16", "--data.num_val", "4", "--data.num_test", "4"]
    options += ["--trainer.enable_progress_bar", "false"]
code = visnet_cli(["fit", *options])
assert code == 0, f"visnet fit exited with {code}"

# 2. Evaluate on the held-out split (MAE/RMSE table, parity plots in the run folder).
code = visnet_cli(["evaluate", "--model", str(run / "model.pt"), "--data", str(data), "--split", "test"])
assert code == 0, f"visnet evaluate exited with {code}"

# 3. Use the model: energy (eV) and forces (eV/Å) of one frame through the ASE calculator.
atoms = read(data, index=pick(0, 0))
atoms.calc = visnet.ViSNetCalculator(model=str(run / "model.pt"), accel="eager")
print(f"energy {atoms.get_potential_energy():.4f} eV, max |F| {abs(atoms.get_forces()).max():.3f} eV/Å")
