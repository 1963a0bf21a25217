"""Active learning: improve the bundled model on a molecule it was not trained on, with GFN2-xTB
(tblite) labelling the frames its committee is unsure about (``visnet.learn`` = ``visnet learn``).

    python examples/active_learning.py

Round 0 samples the start model's MD, labels the frames and fine-tunes a committee (one start
model, several seeds); each later round runs the committee's MD, labels the uncertain frames (max
force std above ``max_force_std``) and fine-tunes every member from its previous-round self on all
frames so far. Killed and rerun, it continues where it stopped; ``runs/active_learning/report.csv``
and ``report.png`` hold one row per round. Any ASE calculator can label instead of xTB:
``calculator="mypackage.dft:make_calculator"``.
"""

from __future__ import annotations

from pathlib import Path

from _settings import TINY, pick

import visnet

# Training options of every member's fine-tune (a `visnet fit` config without architecture options).
config = Path("active_learning_train.yaml")
config.write_text(f"trainer:\n  max_epochs: {pick(40, 1)}\n  max_time: '00:00:02:00'\ndata:\n  batch_size: 4\n")

result = visnet.learn(
    "ethanol" if TINY else "CCOc1ccc(NC(C)=O)cc1",  # phenacetin: not among the bundled model's molecules
    model="default",
    committee=pick(3, 2),
    rounds=pick(3, 1),
    md_steps=pick(1000, 20),
    temperature=500.0,
    max_force_std=pick(50, 1) / 1000,  # eV/Å
    max_frames_per_round=pick(20, 3),
    check_interval=pick(10, 5),
    train_config=config,
    out="runs/active_learning",
)
for state in result.rounds:
    print(f"round {state.index}: {state.labelled} frames added, {state.total_frames} labelled in all")
print("committee:", [str(m) for m in result.members], "| report:", result.report)
