#!/usr/bin/env python
"""Train the bundled QM9 property models and write ``visnet/pretrained/qm9.json``.

For each target (default U0, homo, lumo, gap, mu) this runs, from the repository root::

    visnet fit --config configs/qm9_<target>_cpu.yaml --data.path <data> --trainer.default_root_dir <runs>/qm9_<target>
    visnet evaluate --model <runs>/qm9_<target>/model.pt --data <data> --split test

then copies ``model.pt`` to ``<pretrained-dir>/qm9_<target>.pt`` and records the held-out test MAE
(training unit and the paper's: meV for energies, D for mu) in the bundle manifest ``qm9.json``
(updated after every target, keeping entries of targets not retrained), so that
``visnet.predict("CCO", model="qm9")`` uses the models.

Full run (~14 CPU minutes per target, one target at a time; OMP_NUM_THREADS=1 on a shared 2-core box):

    OMP_NUM_THREADS=1 .venv/bin/python scripts/train_qm9_models.py

Smoke test (a few hundred molecules, one epoch, everything in a temporary folder):

    .venv/bin/python scripts/train_qm9_models.py --smoke
    .venv/bin/python scripts/train_qm9_models.py --targets U0 mu --out /tmp/qm9 -- --trainer.max_epochs 1

Arguments after ``--`` are passed to ``visnet fit`` (LightningCLI overrides).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from visnet.io.bundles import read_bundle, write_bundle

REPO = Path(__file__).resolve().parents[1]

TARGETS = ("U0", "homo", "lumo", "gap", "mu")
DEFAULT_DATA = "../shared/data/qm9/qm9_full.npz"
SMOKE_OVERRIDES = [
    "--data.num_train",
    "200",
    "--data.num_val",
    "50",
    "--data.num_test",
    "50",
    "--trainer.max_epochs",
    "1",
    "--model.lr_warmup_steps",
    "5",
    "--trainer.enable_progress_bar",
    "false",
]
BUNDLE_NAME = "qm9"
DESCRIPTION = (
    "Small ViSNet models (64 channels, 3 layers, lmax 2), one per QM9 property, each trained for at most "
    "14 CPU minutes on 10,000 molecules of QM9 (B3LYP/6-31G(2df,p)); test_mae is measured on held-out "
    "test molecules of the same random split. Far from the paper's full-budget accuracy."
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), help="QM9 targets to train")
    parser.add_argument("--data", default=DEFAULT_DATA, help="QM9 npz (relative paths: from the repository root)")
    parser.add_argument(
        "--out",
        default=None,
        help="folder for runs/ and pretrained/ (default: runs/qm9_bundle "
        "and visnet/pretrained; --smoke: a new temporary folder)",
    )
    parser.add_argument("--runs-dir", default=None, help="training runs (default runs/qm9_bundle)")
    parser.add_argument(
        "--pretrained-dir", default=None, help="where the models and qm9.json go (default visnet/pretrained)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny run (200 molecules, 1 epoch) into a temporary folder"
    )
    parser.add_argument("--skip-fit", action="store_true", help="only evaluate and bundle existing runs")
    parser.add_argument("fit_args", nargs="*", help="after --: extra `visnet fit` arguments")
    return parser.parse_args(argv)


def resolve_dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    """(runs folder, pretrained folder); a smoke run never writes into visnet/pretrained by default."""
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="visnet_qm9_smoke_")) if args.smoke else None)
    runs = Path(args.runs_dir) if args.runs_dir else (out / "runs" if out else REPO / "runs" / "qm9_bundle")
    default_pretrained = out / "pretrained" if out else REPO / "visnet" / "pretrained"
    pretrained = Path(args.pretrained_dir) if args.pretrained_dir else default_pretrained
    return runs.resolve(), pretrained.resolve()


def visnet_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "visnet.cli", *args]


def run(command: list[str]) -> None:
    """Run a command from the repository root; raise with its exit code if it fails."""
    print("$ " + " ".join(command), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    code = subprocess.call(command, cwd=REPO, env=env)
    if code != 0:
        raise RuntimeError(f"command failed with exit code {code}: {' '.join(command)}")


def fit(target: str, data: str, run_dir: Path, extra: list[str]) -> Path:
    """Train one target with our CLI; returns the exported model.pt."""
    config = REPO / "configs" / f"qm9_{target}_cpu.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"no config for target {target!r}: {config}")
    run(
        visnet_command(
            "fit", "--config", str(config), "--data.path", data, "--trainer.default_root_dir", str(run_dir), *extra
        )
    )
    model = run_dir / "model.pt"
    if not model.is_file():
        raise FileNotFoundError(f"training of {target} exported no model: {model} is missing")
    return model


def evaluate(run_dir: Path, data: str) -> dict[str, Any]:
    """Held-out test metrics of the run's model (``visnet evaluate --split test``)."""
    out = run_dir / "evaluation_test"
    run(
        visnet_command(
            "evaluate", "--model", str(run_dir / "model.pt"), "--data", data, "--split", "test", "--out", str(out)
        )
    )
    return json.loads((out / "metrics.json").read_text())


def copy_atomic(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` through a temporary file in the target folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def manifest_entry(target: str, metrics: dict[str, Any], data: str, extra: list[str]) -> dict[str, Any]:
    """The bundle entry of one target from its ``metrics.json``."""
    row = metrics["metrics"][0]
    return {
        "property": target,
        "file": f"qm9_{target}.pt",
        "unit": row["unit"],
        "test_mae": row["mae"],
        "test_rmse": row["rmse"],
        "test_mae_paper_unit": row["mae_milli"],
        "paper_unit": row["milli_unit"],
        "num_test": row["n"],
        "config": f"configs/qm9_{target}_cpu.yaml",
        "fit_overrides": extra,
        "data": data,
        "trained": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }


def update_manifest(pretrained: Path, entry: dict[str, Any]) -> Path:
    """Add or replace ``entry`` in ``pretrained/qm9.json``, keeping the other targets' entries."""
    path = pretrained / f"{BUNDLE_NAME}.json"
    entries: list[dict[str, Any]] = []
    if path.is_file():
        entries = [e for e in read_bundle(path)["models"] if e["property"] != entry["property"]]
        entries = [e for e in entries if (pretrained / e["file"]).is_file()]  # drop placeholders of untrained models
    entries.append(entry)
    order = {t: k for k, t in enumerate(TARGETS)}
    entries.sort(key=lambda e: order.get(e["property"], len(order)))
    return write_bundle(
        path,
        BUNDLE_NAME,
        entries,
        description=DESCRIPTION,
        level_of_theory="B3LYP/6-31G(2df,p) (QM9)",
        training_script="scripts/train_qm9_models.py",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    runs, pretrained = resolve_dirs(args)
    extra = (SMOKE_OVERRIDES if args.smoke else []) + list(args.fit_args)
    print(f"runs: {runs}\nmodels and manifest: {pretrained}", flush=True)
    for target in args.targets:
        run_dir = runs / f"qm9_{target}"
        if not args.skip_fit:
            fit(target, args.data, run_dir, extra)
        metrics = evaluate(run_dir, args.data)
        copy_atomic(run_dir / "model.pt", pretrained / f"qm9_{target}.pt")
        entry = manifest_entry(target, metrics, args.data, extra)
        manifest = update_manifest(pretrained, entry)
        mae = f"{entry['test_mae_paper_unit']:.4g} {entry['paper_unit']} ({entry['num_test']} molecules)"
        print(f"{target}: test MAE {mae} -> {pretrained / entry['file']}; manifest {manifest}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
