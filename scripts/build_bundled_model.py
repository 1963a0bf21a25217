"""Ship a trained model inside the package: evaluate it on its held-out test split, copy it to
``visnet/pretrained/<name>.pt`` and write the model card ``visnet/pretrained/<name>.json``.

    python scripts/build_bundled_model.py --run runs/default_model --data runs/default_model/xtb_10mol.extxyz \\
        --name default --config configs/default_model.yaml --wall-time-min 24 \\
        --valid-for "aspirin, azobenzene, benzene, ethanol, malonaldehyde, naphthalene, paracetamol, ..."
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from visnet.io.model_files import load_model, save_model
from visnet.training.evaluate import EvaluationConfig, evaluate

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = REPO / "visnet" / "pretrained"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="run folder with model.pt and splits.npz")
    parser.add_argument("--data", required=True, help="the data file the run trained on")
    parser.add_argument("--name", required=True, help="bundled name (load_model(name))")
    parser.add_argument("--config", required=True, help="config the run used")
    parser.add_argument("--wall-time-min", type=float, required=True, help="training wall time, minutes")
    parser.add_argument("--valid-for", required=True, help="what the model may be used for")
    parser.add_argument("--format", default="auto")
    args = parser.parse_args()

    metrics = evaluate(
        EvaluationConfig(
            model=str(args.run / "model.pt"),
            data=args.data,
            split="test",
            run_dir=str(args.run),
            format=args.format,
        )
    )
    model = load_model(args.run / "model.pt")
    card = {
        "name": args.name,
        "config": args.config,
        "training_wall_time_min": args.wall_time_min,
        "valid_for": args.valid_for,
        "parameters": model.num_parameters(),
        "hyperparameters": model.hparams,
        "metadata": {k: v for k, v in model.metadata.items() if k != "checkpoint"},
        "test_metrics": metrics,
    }
    PRETRAINED.mkdir(exist_ok=True)
    # Re-save through save_model: a clean file with the card's facts in its metadata.
    target = save_model(model, PRETRAINED / f"{args.name}.pt", model_card=f"{args.name}.json", valid_for=args.valid_for)
    tmp = PRETRAINED / f".{args.name}.json.tmp"
    tmp.write_text(json.dumps(card, indent=2, default=str) + "\n")
    os.replace(tmp, PRETRAINED / f"{args.name}.json")
    print(f"bundled {target} ({target.stat().st_size / 1e6:.1f} MB) and {args.name}.json")


if __name__ == "__main__":
    main()
