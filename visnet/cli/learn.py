"""``visnet learn STRUCTURE``: active learning (``visnet.learning.learn``): rounds of committee MD,
harvest of uncertain frames, labelling (GFN2-xTB or ``--calculator``) and fine-tuning.

    visnet learn CCOc1ccc(NC(C)=O)cc1 --model default --committee 3 --rounds 3 --md-steps 2000 \\
        --temperature 500 --max-force-std 0.15 --max-frames-per-round 20 --test test.extxyz --out runs/learn
    visnet learn ethanol --model runs/my_ensemble --calculator mypackage.dft:make_calculator

Killed and rerun with the same options, it continues; ``--rounds`` may grow. Fine-tunes run in
this process (``visnet.cli.fit.lightning_main``). Prints a line per stage and the report's path.
"""

from __future__ import annotations

import argparse

from visnet.learning.options import LearnOptions

DEFAULTS = LearnOptions(structure="")


def build_parser() -> argparse.ArgumentParser:
    """The options of ``visnet learn``."""
    d = DEFAULTS
    parser = argparse.ArgumentParser(
        prog="visnet learn",
        description="Active learning: committee MD -> uncertain frames -> labels -> fine-tuned committee, "
        "for --rounds rounds or until no frame is uncertain; resumable.",
    )
    add = parser.add_argument
    add("structure", help="start structure of every round's MD: a file, a bundled molecule name or a SMILES")
    add("--model", default=d.model, help="start model (bundled name, model file) or an ensemble run folder")
    add("--committee", type=int, default=None, help="committee members (default 3, or the ensemble's size)")
    add("--rounds", type=int, default=d.rounds, help=f"rounds after round 0 (default {d.rounds})")
    add("--md-steps", type=int, default=d.md_steps, help=f"MD steps per round (default {d.md_steps})")
    add("--temperature", type=float, default=d.temperature, help=f"Langevin temperature, K (default {d.temperature})")
    add("--timestep", type=float, default=d.timestep, help=f"MD time step, fs (default {d.timestep})")
    add(
        "--max-force-std",
        type=float,
        default=d.max_force_std,
        help=f"uncertain above this committee max force std, eV/Å (default {d.max_force_std})",
    )
    add(
        "--max-frames-per-round",
        type=int,
        default=d.max_frames_per_round,
        help=f"frames labelled per round at most (default {d.max_frames_per_round})",
    )
    add(
        "--check-interval",
        type=int,
        default=d.check_interval,
        help=f"MD steps between uncertainty checks (default {d.check_interval})",
    )
    add("--train-config", default=None, help="visnet fit YAML of training options (no architecture options)")
    add("--test", default=None, help="extended XYZ reference frames: test errors reported every round")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--method", default=d.method, help="labelling method through tblite (default gfn2-xtb)")
    which.add_argument(
        "--calculator", default=None, metavar="MODULE:FACTORY", help="label with this ASE calculator instead"
    )
    add("--workers", type=int, default=d.workers, help="labelling worker processes (default 1)")
    add("--seed", type=int, default=d.seed, help="seed of MD and training (default 0)")
    add("--out", default=d.out, help=f"run folder (default {d.out})")
    add("--no-progress", action="store_true", help="no progress lines or bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``visnet learn``; returns the exit code (errors reach ``visnet.cli``'s boundary)."""
    from visnet.cli.fit import lightning_main
    from visnet.learning import learn

    args = build_parser().parse_args(argv)
    result = learn(
        args.structure,
        model=args.model,
        committee=args.committee,
        rounds=args.rounds,
        md_steps=args.md_steps,
        temperature=args.temperature,
        timestep=args.timestep,
        max_force_std=args.max_force_std,
        max_frames_per_round=args.max_frames_per_round,
        check_interval=args.check_interval,
        train_config=args.train_config,
        test=args.test,
        method=args.method,
        calculator=args.calculator,
        workers=args.workers,
        seed=args.seed,
        out=args.out,
        fit_runner=lightning_main,
        progress=not args.no_progress,
    )
    state = "converged" if result.converged else f"{len(result.rounds)} rounds"
    print(f"active learning: {state}; committee: {result.members[0].parent.parent}; report: {result.report}")
    return 0
