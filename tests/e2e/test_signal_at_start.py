"""A preemption signal while a run is still starting (issue 27, item 14): before, the
process died without a word (its handler was installed only when the epochs began) and
left a stub folder; now it stops at once with one line and exit status 128 + N, and a
folder with nothing trained in it is removed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import ROOT, TINY


def test_sigterm_during_start_up_is_one_line_and_leaves_no_folder(tmp_path):
    run = tmp_path / "run"
    # 2,000,000 epochs: the dry run of the schedule before any data is read takes a minute
    args = [*TINY, "trainer.epochs=2000000", "trainer.num_threads=1", f"hydra.run.dir={run}"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not (run / ".hydra").is_dir() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(1.5)  # inside the task's start-up
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "stopped by SIGTERM before training began: nothing was trained, no run folder left; rerun the same " \
           "command" in out and "Traceback" not in out, out
    assert not run.exists()
