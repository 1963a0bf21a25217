"""The ``visnet`` command.

``visnet fit|validate|test|predict --config configs/<name>.yaml`` run LightningCLI;
``visnet predict`` without ``--config`` predicts properties of SMILES / files / molecules
(``visnet.cli.predict``); ``visnet evaluate`` prints an error table and writes parity plots;
``visnet md`` runs molecular dynamics with the ASE calculator; ``visnet export`` writes an AOTInductor
package (``.pt2``) of an energy model; ``visnet plot`` draws learning curves. Each subcommand's
module parses its options and calls the workflow below it; subcommands import their modules
lazily so ``visnet md`` and ``visnet predict`` do not pay for Lightning's import.

This is the one error boundary of every subcommand: subcommands raise, they never print errors.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import import_module

USAGE = """usage: visnet <command> [options]

commands:
  fit        train a model with LightningCLI (--config configs/<name>.yaml)
  validate   validation metrics of a checkpoint with LightningCLI (--config ..., --ckpt_path ...)
  test       test metrics of a checkpoint with LightningCLI (--config ..., --ckpt_path ...)
  predict    properties of SMILES, files, molecule names
             (visnet predict --smiles CCO --model qm9 --output results.csv);
             with --config: LightningCLI's predict on a data set
  evaluate   MAE/RMSE table and parity plots of a model on a data file
  md         molecular dynamics with a ViSNet model (ASE)
  export     AOTInductor package of a model: visnet export model.pt model.pt2
  cache      the fast-path cache of exported packages: visnet cache list | build MODEL | clear
  plot       learning curves (PNG) of run folders: visnet plot runs/<name>
  lammps     run a LAMMPS input with a ViSNet potential (mpiexec -n K visnet lammps in.lmp --model M)
  label      energies and forces by GFN2-xTB or an ASE calculator: visnet label IN OUT.extxyz
  explain    per-atom explanation of a prediction (CSV, 2D/3D pictures): visnet explain aspirin
  learn      active learning: committee MD, uncertain frames labelled, committee fine-tuned, in rounds

`visnet <command> --help` shows the options of a command."""

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

# command -> module whose ``main(argv) -> int`` runs it (imported on use: only fit pays for Lightning)
COMMANDS = {
    "predict": "visnet.cli.predict",
    "evaluate": "visnet.cli.evaluate",
    "md": "visnet.cli.md",
    "export": "visnet.cli.export",
    "cache": "visnet.cli.cache",
    "plot": "visnet.cli.plot",
    "lammps": "visnet.cli.lammps",
    "label": "visnet.cli.label",
    "explain": "visnet.cli.explain",
    "learn": "visnet.cli.learn",
}


def _has_config(args: list[str]) -> bool:
    """Whether LightningCLI options select a config (``--config``/``-c``, ``--config=...``)."""
    return any(a in ("--config", "-c") or a.startswith("--config=") for a in args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``visnet`` console script; returns the exit code.

    The one error boundary of every subcommand: a user error (``visnet.errors.is_user_error``: bad
    input, a missing file, no space left, permission denied, ...) prints ``visnet: error: ...`` and
    returns 2; Ctrl-C returns 130; any other exception is a bug and keeps its traceback.
    """
    from visnet.errors import is_user_error, user_message

    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        print("visnet: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if not is_user_error(err):
            raise
        print(f"visnet: error: {user_message(err)}", file=sys.stderr)
        return 2


def _dispatch(argv: list[str]) -> int:
    """Run the subcommand named by ``argv[0]``; returns its exit code."""
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command in LIGHTNING_COMMANDS and (command != "predict" or _has_config(rest)):
        from visnet.cli.fit import lightning_main

        return lightning_main([command, *rest])
    if command in COMMANDS:
        run: Callable[[list[str]], int] = import_module(COMMANDS[command]).main
        return run(rest)
    print(f"visnet: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
