"""Active learning on a molecule outside the bundled model's training set: phenacetin
(CCOc1ccc(NC(C)=O)cc1; in neither scripts/build_default_dataset.py's ten molecules nor
scripts/build_organic_dataset.py's lists, and with 13 heavy atoms not a QM9 molecule), GFN2-xTB
(tblite) as the oracle. The test set is a held-out xTB-driven trajectory: Langevin BAOAB MD at
500 K with xTB forces, 100 frames every 10 steps after 200 steps of equilibration, labelled by
``visnet.label`` (built once, cached in ``runs/bench_learn/``). Then ``visnet.learn`` runs round 0
(the start model's MD sampled, labelled, 3 members fine-tuned from ``default``) and ``--rounds``
rounds of committee MD → uncertain frames → labels → fine-tuned members, and the committee's force
MAE against xTB on the held-out trajectory is reported per round (the goal: it falls round after
round), beside the start model's own. Writes the bench_learn section of BENCHMARKS.md and the plot
to docs/assets/learn_rounds.png. No floor applies (a workflow, not a kernel). Resumable: rerun the
same command after a kill and the run continues::

    OMP_NUM_THREADS=1 flock /tmp/heavy.lock python scripts/bench_learn.py [--rounds 3] [--output BENCHMARKS.md | --no-write]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
from benchlib import add_output_arguments, command_line, machine, write_section

REPO = Path(__file__).resolve().parents[1]
SMILES = "CCOc1ccc(NC(C)=O)cc1"  # phenacetin
WORK = REPO / "runs" / "bench_learn"
PLOT = REPO / "docs" / "assets" / "learn_rounds.png"
REFERENCE_TEMPERATURE = 500.0  # K
REFERENCE_EQUILIBRATION = 200  # xTB MD steps not recorded
REFERENCE_FRAMES = 100
REFERENCE_EVERY = 10  # steps between recorded frames
TIMESTEP = 0.5  # fs
# Fine-tuning budget of one member: short, so that four rounds of three members fit ~20 CPU minutes.
TRAIN_CONFIG = """\
trainer:
  max_epochs: 40
  max_time: "00:00:01:00"
model:
  lr: 5.0e-4
data:
  batch_size: 4
"""


def start_structure() -> Path:
    """Phenacetin from SMILES (RDKit, seed 0), written once so every run starts from the same atoms."""
    import ase.io

    from visnet.structures.molecules import load_structure

    path = WORK / "phenacetin.xyz"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        ase.io.write(path, load_structure(SMILES, seed=0))
    return path


def reference_trajectory(structure: Path) -> Path:
    """The held-out xTB trajectory (cached): BAOAB Langevin at 500 K with GFN2-xTB forces, labelled."""
    import ase.io
    from ase import units
    from ase.md.langevinbaoab import LangevinBAOAB
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from tblite.ase import TBLite

    from visnet.labelling import label

    labelled = WORK / "reference_xtb_500K.extxyz"
    if labelled.exists():
        return labelled
    atoms = ase.io.read(structure)
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    MaxwellBoltzmannDistribution(atoms, temperature_K=REFERENCE_TEMPERATURE, rng=np.random.default_rng(1234))
    dyn = LangevinBAOAB(
        atoms,
        TIMESTEP * units.fs,
        temperature_K=REFERENCE_TEMPERATURE,
        T_tau=100 * units.fs,
        rng=np.random.default_rng(1234),
    )
    dyn.run(REFERENCE_EQUILIBRATION)
    frames = []
    for _ in range(REFERENCE_FRAMES):
        dyn.run(REFERENCE_EVERY)
        frames.append(atoms.copy())
    label(frames, labelled, progress=False)
    return labelled


def start_model_error(reference: Path) -> float:
    """Force MAE (eV/Å) of the start model ``default`` alone on the reference frames."""
    from visnet.learning.reference_errors import committee_errors, read_reference

    return committee_errors(["default"], read_reference(reference))["force_mae"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds after round 0")
    parser.add_argument("--committee", type=int, default=3)
    parser.add_argument("--md-steps", type=int, default=500, help="MD steps per round")
    parser.add_argument("--max-force-std", type=float, default=0.05, help="eV/Å")
    parser.add_argument("--max-frames-per-round", type=int, default=20)
    parser.add_argument("--fresh", action="store_true", help="delete the learning run first (keeps the reference)")
    add_output_arguments(parser)
    args = parser.parse_args()

    import ase.io

    from visnet.cli.fit import lightning_main
    from visnet.learning import learn

    structure = start_structure()
    start = time.perf_counter()
    reference = reference_trajectory(structure)
    reference_wall = time.perf_counter() - start
    config = WORK / "train.yaml"
    config.write_text(TRAIN_CONFIG)
    out = WORK / "run"
    if args.fresh and out.exists():
        shutil.rmtree(out)
    start = time.perf_counter()
    result = learn(
        str(structure),
        model="default",
        committee=args.committee,
        rounds=args.rounds,
        md_steps=args.md_steps,
        temperature=REFERENCE_TEMPERATURE,
        timestep=TIMESTEP,
        max_force_std=args.max_force_std,
        max_frames_per_round=args.max_frames_per_round,
        train_config=str(config),
        test=str(reference),
        out=str(out),
        fit_runner=lightning_main,
        progress=True,
    )
    learn_wall = time.perf_counter() - start
    baseline = start_model_error(reference)
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.plot, PLOT)
    atoms = len(ase.io.read(structure))
    write_section(__file__, _section(args, result, atoms, baseline, learn_wall, reference_wall), args)


def _section(
    args: argparse.Namespace, result, atoms: int, baseline: float, learn_wall: float, reference_wall: float
) -> str:
    rows = [
        "| round | frames added | labelled frames | uncertain / checked MD frames | max / mean force std (eV/Å) "
        "| test force MAE (meV/Å) | test energy MAE (meV/atom) |",
        "|---|---|---|---|---|---|---|",
        f"| start model `default` | | | | | {baseline * 1000:.1f} | |",
    ]
    for s in result.rounds:
        std = "" if s.max_force_std is None else f"{s.max_force_std:.3f} / {s.mean_force_std:.3f}"
        checked = "(start model's MD)" if s.index == 0 else f"{s.uncertain_frames} / {s.checked_frames}"
        force = s.test.get("force_mae", float("nan")) * 1000
        energy = s.test.get("energy_mae_per_atom", float("nan")) * 1000
        rows.append(f"| {s.index} | {s.labelled} | {s.total_frames} | {checked} | {std} | {force:.1f} | {energy:.2f} |")
    errors = [s.test["force_mae"] for s in result.rounds if "force_mae" in s.test]
    falls = all(b < a for a, b in zip(errors, errors[1:]))
    verdict = "falls every round" if falls else "does **not** fall every round"
    return "\n".join(
        [
            "## bench_learn: active learning on phenacetin (GFN2-xTB oracle)",
            "",
            f"`{command_line(__file__)}` — {machine()}",
            "",
            f"Phenacetin ({SMILES}, {atoms} atoms, outside `default`'s training set), `visnet.learn` with committee "
            f"{args.committee}, {args.md_steps} MD steps per round at {REFERENCE_TEMPERATURE:.0f} K, max force std "
            f"{args.max_force_std} eV/Å, at most {args.max_frames_per_round} frames per round, 1 minute "
            "(`trainer.max_time`, wall clock) of fine-tuning per member. "
            f"Test set: {REFERENCE_FRAMES} frames {REFERENCE_EVERY * TIMESTEP:g} fs apart, "
            f"after {REFERENCE_EQUILIBRATION * TIMESTEP:g} fs of equilibration, of a held-out GFN2-xTB BAOAB Langevin "
            f"trajectory at 500 K with its own seed ({reference_wall:.0f} s to build or read). Errors are the "
            "committee mean's. "
            f"Active learning wall time: {learn_wall / 60:.1f} min (this invocation; a resumed run counts only "
            f"its own part). The test force MAE {verdict}.",
            "",
            *rows,
            "",
            "![test error and frames per round](docs/assets/learn_rounds.png)",
        ]
    )


if __name__ == "__main__":
    main()
