"""Committee uncertainty: train a small committee, run MD with it and harvest uncertain frames.

    python examples/uncertainty.py

``visnet fit --ensemble N`` trains N members (member k with seed + k) into one run folder, which is
a committee for the calculator and ``visnet md``. During MD the committee's maximum force standard
deviation (eV/Å, DP-GEN's ``max_devi_f``) is logged; frames above ``max_force_std`` are written to
``<name>_uncertain.extxyz`` for labelling (``visnet label``) and retraining.
"""

from __future__ import annotations

from pathlib import Path

from _settings import ETHANOL_DFT, REPO, TINY, pick
from ase.build import molecule

from visnet import ViSNetCalculator
from visnet.cli import main as visnet_cli
from visnet.dynamics import MDConfig, run_md

committee = Path("runs/committee")
config = REPO / "configs" / ("tiny.yaml" if TINY else "rmd17_ethanol_cpu.yaml")
options = ["--config", str(config), "--data.path", str(ETHANOL_DFT), "--trainer.default_root_dir", str(committee)]
options += ["--ensemble", str(pick(4, 2))]
if TINY:
    options += ["--trainer.max_epochs", "1", "--data.num_train", "16", "--data.num_val", "4", "--data.num_test", "4"]
    options += ["--trainer.enable_progress_bar", "false"]
else:
    options += ["--trainer.max_time", "00:00:05:00"]
assert visnet_cli(["fit", *options]) == 0

# The committee as a calculator: mean energy and forces, plus their spread over the members.
atoms = molecule("CH3CH2OH")
atoms.calc = ViSNetCalculator(model=str(committee), accel="eager")
atoms.get_potential_energy()
print(
    f"energy std {atoms.calc.results['energy_std']:.4f} eV, max force std {atoms.calc.results['forces_std'].max():.4f} eV/Å"
)

# MD at 500 K with the committee; frames whose max force std exceeds 0.2 eV/Å are harvested.
config = MDConfig(
    structure="ethanol",
    model=str(committee),
    temperature=500.0,
    steps=pick(2000, 6),
    log_interval=pick(10, 2),
    traj_interval=pick(10, 2),
    max_force_std=0.2,
    output_dir="md_committee",
    progress=False,
    plots=not TINY,
)
result = run_md(config)
print(f"{len(result.uncertain_steps)} uncertain frames -> md_committee/*_uncertain.extxyz")
