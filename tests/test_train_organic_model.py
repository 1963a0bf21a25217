"""scripts/train_organic_model.py becomes ``visnet fit`` (exec): SIGTERM sent to the script (as
``timeout`` or ``kill PID`` sends it) stops the training itself, which exports ``model.pt`` marked
interrupted and exits 143; nothing is left running. As a subprocess (before), the training went on
after the script was killed.

The script's paths point at a tiny run here (the tiny config, rMD17 ethanol, a run folder under
``tmp_path``). ``HANG_SECONDS`` guards against a hang; it is no timing assertion.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from conftest import REPO, shared_file

from visnet.io.model_files import load_model

HANG_SECONDS = 120
WAIT_SECONDS = 300  # for the first last.ckpt on a contended machine

# Runs the script's train() with its module paths replaced (argv: config, data, state folder).
RUNNER = """
import importlib.util, sys
from pathlib import Path

spec = importlib.util.spec_from_file_location("train_organic_model", "scripts/train_organic_model.py")
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)
config, data, state = (Path(a) for a in sys.argv[1:4])
script.CONFIG, script.DATA = config, data
script.RUN_CKPT, script.STATE_DIR, script.STATE_CKPT = state / "run_last.ckpt", state, state / "last.ckpt"
script.train(1)
"""


def _session_alive(group: int) -> bool:
    """Whether a process of process group ``group`` still runs (zombies count as ended)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def _wait(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.05)


def test_sigterm_to_the_script_stops_the_training(tmp_path: Path) -> None:
    run = tmp_path / "run"
    tiny = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    tiny["trainer"].update(default_root_dir=str(run), max_epochs=100000, enable_progress_bar=False)
    tiny["data"]["path"] = str(shared_file("rmd17", "rmd17_ethanol_train1000.npz"))
    tiny["early_stopping"]["patience"] = 100000
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny))
    state = tmp_path / "state"
    command = [sys.executable, "-c", RUNNER, str(config), tiny["data"]["path"], str(state)]
    err = tmp_path / "stderr.txt"
    with open(err, "w") as handle:
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=handle, start_new_session=True)
    try:
        last = run / "checkpoints" / "last.ckpt"
        _wait(lambda: last.is_file() or process.poll() is not None, WAIT_SECONDS, "last.ckpt")
        assert process.poll() is None, err.read_text()[-3000:]
        process.send_signal(signal.SIGTERM)  # the script's process id only
        code = process.wait(timeout=HANG_SECONDS)
        _wait(lambda: not _session_alive(process.pid), HANG_SECONDS, "end of the training")
    finally:
        if _session_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert code == 128 + signal.SIGTERM, err.read_text()[-3000:]
    assert "SIGTERM received: stopping" in err.read_text()
    assert load_model(run / "model.pt").metadata["interrupted"] is True
