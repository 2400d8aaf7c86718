"""A stopped run continues from what the user can type: the preemption message prints
the command, and that command (``resume=RUN_DIR``, or the sweep's own command with its
folder) continues the run in its folder, through the real train.py."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT

# digits, ~0.25 s an epoch on one core: long enough to be stopped after its first epoch
RUN = ["experiment=quickstart", "trainer.epochs=12", "method.start_epoch=2", "device=cpu", "logger=csv"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"} | {"PYTHONUNBUFFERED": "1"}


def stop_after_first_epoch(args: list[str], cwd: Path, pattern: str) -> str:
    """Start train.py, SIGTERM it once a run folder matching ``pattern`` has logged an
    epoch, and return what it printed."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not any(p.read_text().strip() for p in cwd.glob(pattern)):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signal.SIGTERM, out
    return out


def printed_command(out: str, label: str) -> list[str]:
    """The command after ``label`` in the output, as argv for this interpreter."""
    line = next(x for x in out.splitlines() if label in x)
    argv = shlex.split(line.split(label, 1)[1])
    assert argv[0] == "python", line
    return [sys.executable, *argv[1:]]


def run_printed(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def epochs_logged(run: Path) -> list[int]:
    return [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_preempted_run_continues_in_its_folder_with_the_printed_command(tmp_path):
    out = stop_after_first_epoch(RUN, tmp_path, "outputs/quickstart/*/*/metrics.jsonl")
    (run,) = tmp_path.glob("outputs/quickstart/*/*")
    assert json.loads((run / "summary.json").read_text())["status"] == "preempted"
    command = printed_command(out, "to continue this run: ")
    assert command[2:] == [f"resume={run.relative_to(tmp_path)}"]  # the run's folder, nothing else to retype
    again = run_printed(command, tmp_path)
    assert "continuing from" in again.stdout + again.stderr
    assert list(tmp_path.glob("outputs/quickstart/*/*")) == [run]  # continued in place, no new folder
    assert epochs_logged(run) == list(range(1, 13))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs_done"] == 12
    # the continued run is the same run: its settings came back from its folder
    assert "trainer.epochs=12" in (run / ".hydra/overrides.yaml").read_text()


def test_a_preempted_sweep_job_continues_alone_or_with_its_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    out = stop_after_first_epoch(["-m", *RUN, "seed=0,1", f"hydra.sweep.dir={sweep}"], tmp_path,
                                 "sweep/*/metrics.jsonl")
    (job,) = [p.parent for p in sweep.glob("*/metrics.jsonl")]  # the basic launcher: the first job, stopped
    assert job.name.endswith("+seed-0")
    job_command = printed_command(out, "to continue this run: ")
    sweep_command = printed_command(out, "to continue the whole sweep in place: ")
    assert job_command[2:] == [f"resume={job.relative_to(tmp_path)}"]
    assert sweep_command[2:] == ["-m", *RUN, "seed=0,1", f"hydra.sweep.dir={sweep.relative_to(tmp_path)}"]

    run_printed(job_command, tmp_path)  # this job alone, in its folder
    assert epochs_logged(job) == list(range(1, 13))
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == [job.name]

    again = run_printed(sweep_command, tmp_path)  # the sweep: the finished job is left as it is, the other runs
    assert "is already finished" in again.stdout + again.stderr
    assert epochs_logged(job) == list(range(1, 13))
    other = sweep / job.name.replace("seed-0", "seed-1")
    assert json.loads((other / "summary.json").read_text())["status"] == "finished"


def test_resume_run_dir_puts_the_run_s_overrides_back_and_keeps_what_is_typed(tmp_path):
    from sat.cli.continue_run import expand_resume

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra/overrides.yaml").write_text("- experiment=quickstart\n- device=cuda\n- resume=auto\n")
    assert expand_resume([f"resume={tmp_path}", "device=cpu"]) == [
        "experiment=quickstart", f"resume={tmp_path}", "device=cpu", f"hydra.run.dir={tmp_path}"]
    elsewhere = [f"resume={tmp_path}", "hydra.run.dir=fork"]  # another folder asked for: continued there
    assert expand_resume(elsewhere) == ["experiment=quickstart", "device=cuda", *elsewhere]
    checkpoint = [f"resume={tmp_path}/checkpoints/last.pt"]  # a file, or a sweep: left as typed
    assert expand_resume(checkpoint) == checkpoint and expand_resume(["-m", f"resume={tmp_path}"]) == ["-m", f"resume={tmp_path}"]
