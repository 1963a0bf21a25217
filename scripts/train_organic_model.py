"""Train the general organic model (``configs/organic_model.yaml``) in pieces, across sessions.

Training takes longer than one working session on a 2-core machine, and a session keeps only what
is committed. So the run's resumable state (Lightning's ``last.ckpt``: weights, EMA weights,
optimizer, scheduler, loop position and the wall-clock already spent) is committed as
``training_state/organic_model/last.ckpt`` (a few MB) with a small JSON beside it, and every start
resumes from the newest of the run folder's ``last.ckpt`` and the committed one.

    python scripts/build_organic_dataset.py --out runs/organic --workers 2   # data (deterministic)
    python scripts/train_organic_model.py --devices 2     # train until stopped or max_time is spent
    timeout 2h python scripts/train_organic_model.py --devices 2   # stops cleanly (SIGTERM) after 2 h
    python scripts/train_organic_model.py --save          # copy the run's last.ckpt to training_state/
    python scripts/train_organic_model.py --export runs/organic_snapshot.pt   # EMA weights -> model file

``--devices 2`` trains data-parallel over two processes (one thread each, gloo): twice the
structures per second on two cores; the per-process batch stays the config's. Training runs in
this process (the script execs ``visnet fit``): SIGTERM or Ctrl-C sent to the script stops it at the
end of a batch, ``model.pt`` marked interrupted, ``last.ckpt`` the last validation's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import NoReturn

import torch

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "organic_model.yaml"
RUN_CKPT = REPO / "runs" / "organic_model" / "checkpoints" / "last.ckpt"
STATE_DIR = REPO / "training_state" / "organic_model"
STATE_CKPT = STATE_DIR / "last.ckpt"
DATA = REPO / "runs" / "organic" / "train.extxyz"


def file_digest(path: Path) -> str:
    """SHA-256 of a file (to check that a resumed run trains on the data it started with)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_summary(path: Path) -> dict:
    """Step, epoch, wall-clock spent (s) and best validation loss recorded in a Lightning checkpoint."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    callbacks = ckpt.get("callbacks", {})
    elapsed = next(
        (v.get("time_elapsed", {}).get("train") for k, v in callbacks.items() if k.startswith("Timer")), None
    )
    scores = [v.get("best_model_score") for v in callbacks.values() if "best_model_score" in v]
    best = next((s for s in scores if s is not None), None)
    return {
        "global_step": ckpt.get("global_step"),
        "epoch": ckpt.get("epoch"),
        "train_seconds": elapsed,
        "best_val_loss": float(best) if best is not None else None,
    }


def newest_checkpoint() -> Path | None:
    """The run folder's last.ckpt or the committed one, whichever has more optimizer steps."""
    found = [p for p in (RUN_CKPT, STATE_CKPT) if p.exists()]
    if not found:
        return None
    return max(found, key=lambda p: checkpoint_summary(p)["global_step"] or 0)


def check_data() -> None:
    """Say so when the committed state was trained on another data file (a rebuild that differs).

    Resuming is still meaningful then (same recipe, same seeds), so it is a warning, not an error.
    """
    if not DATA.exists():
        sys.exit(f"{DATA} not found: build it first with scripts/build_organic_dataset.py --out runs/organic")
    info = STATE_DIR / "state.json"
    if info.exists():
        expected = json.loads(info.read_text()).get("data_sha256")
        if expected and expected != file_digest(DATA):
            print(f"warning: {DATA} differs from the data the committed state trained on (sha256 {expected[:12]}...)")


def train(devices: int) -> NoReturn:
    """Become ``visnet fit`` (exec, same process id): a signal sent to this script (``timeout``,
    ``kill``, Ctrl-C, a scheduler) reaches the training itself, which stops at the end of its batch
    (every rank), exports ``model.pt`` marked interrupted and exits with 128 + the signal number;
    ``last.ckpt`` is the last validation's, resumed by the next start. A child process (as before)
    was left training when the script alone was killed, and was SIGKILLed by ``subprocess.call`` on
    Ctrl-C."""
    check_data()
    # The console script, not `python -c`: DDP starts its other processes by re-running argv.
    command = [str(Path(sys.executable).parent / "visnet"), "fit", "--config", str(CONFIG)]
    resume = newest_checkpoint()
    if resume is not None:
        command += ["--ckpt_path", str(resume)]
        print(f"resuming from {resume} ({checkpoint_summary(resume)})", flush=True)
    if devices > 1:
        command += ["--trainer.devices", str(devices), "--trainer.strategy", "ddp_find_unused_parameters_true"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(REPO)
    os.execve(command[0], command, env)


def save() -> None:
    """Copy the run's last.ckpt into training_state/ (atomically) with a JSON summary beside it."""
    if not RUN_CKPT.exists():
        sys.exit(f"{RUN_CKPT} not found: nothing to save")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = STATE_DIR / ".last.ckpt.tmp"
    shutil.copyfile(RUN_CKPT, tmp)
    os.replace(tmp, STATE_CKPT)
    summary = {
        **checkpoint_summary(STATE_CKPT),
        "saved": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "config": str(CONFIG.relative_to(REPO)),
        "data_sha256": file_digest(DATA) if DATA.exists() else None,
    }
    tmp = STATE_DIR / ".state.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, STATE_DIR / "state.json")
    print(f"saved {STATE_CKPT} ({STATE_CKPT.stat().st_size / 1e6:.1f} MB): {summary}")


def export(target: Path) -> None:
    """Write the newest checkpoint's (EMA) weights as a model file."""
    from visnet.training.export import export_model

    source = newest_checkpoint()
    if source is None:
        sys.exit("no checkpoint to export")
    path = export_model(source, target)
    print(f"exported {source} ({checkpoint_summary(source)}) -> {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1, help="training processes (one thread each)")
    parser.add_argument("--save", action="store_true", help="commit-ready copy of the run's last.ckpt")
    parser.add_argument("--export", type=Path, help="write the newest checkpoint as a model file")
    args = parser.parse_args()
    if args.save:
        save()
    elif args.export:
        export(args.export)
    else:
        train(args.devices)


if __name__ == "__main__":
    main()
