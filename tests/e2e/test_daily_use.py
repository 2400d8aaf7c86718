"""Daily use: pasteable paths, own models and datasets, progress, the Python API and the
loggers; through the real entry points where the command line is the point, through the
Python API (the same override parser) otherwise."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from conftest import ROOT, TINY, read_metrics, run_entry

import sat
from sat.report.cli import main as report_main

TINY_ANY_METHOD = [a for a in TINY if not a.startswith("method.")]

PLUGIN = ROOT / "examples" / "plugin"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("sweep")
    run_entry("train.py", "-m", *TINY_ANY_METHOD, "method=ce,sat", "trainer.num_threads=1", "debug=fast",
              "trainer.checkpoint_every=1", f"hydra.sweep.dir={cwd / 's'}", cwd=cwd)
    return cwd / "s"


def test_sweep_folder_paths_paste_unquoted_everywhere(sweep, tmp_path):
    """Folder names hold the settings given (not thread counts or devices, which change
    no result) and every path the project prints works unquoted in checkpoint=,
    checkpoints=, resume= and the report."""
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name != "report")  # (report/: the sweep-end report)
    common = "augment-none+dataset-synthetic+debug-fast+{}+model.width-8+model-cnn+trainer.batch_size-64+" \
             "trainer.epochs-2+seed-0"
    assert jobs == [common.format("method-ce"), common.format("method-sat")]
    assert all("=" not in j and "," not in j and "num_threads" not in j and "device" not in j for j in jobs)
    run = sweep / common.format("method-sat")
    # the overrides go through Hydra's parser as on the command line
    assert sat.evaluate([f"checkpoint={run}/checkpoints/last.pt"], output_dir=tmp_path / "e")["epoch"] == 2
    sat.attack([f"checkpoints={run}", "attack=fgsm", "num_samples=32"], output_dir=tmp_path / "a")
    assert len(list(csv.DictReader(open(tmp_path / "a/robustness.csv")))) == 2
    sat.train([*TINY_ANY_METHOD, "method=sat", "trainer.num_threads=1", "debug=fast",
               f"resume={run}/checkpoints/epoch_1.pt"], output_dir=tmp_path / "r")
    assert "continuing from" in (tmp_path / "r" / "train.log").read_text()
    assert [r["epoch"] for r in read_metrics(tmp_path / "r")] == [1, 2]  # epoch 1 from the run, epoch 2 trained
    assert report_main([str(sweep), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "runs.csv").is_file()


def test_own_model_and_dataset_from_a_package_outside_sat(tmp_path):
    env = {"PYTHONPATH": str(PLUGIN)}
    run = tmp_path / "stripes"
    proc = _run("train.py", f"hydra.searchpath=[file://{PLUGIN / 'conf'}]", "model=tiny", "dataset=stripes",
                "augment=none", "noise.rate=0.3", "method.start_epoch=3", "trainer.epochs=6", "device=cpu",
                f"hydra.run.dir={run}", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert "myplug" in summary["packages"] and summary["final"]["test/acc"] > 0.5
    refused = _run("evaluate.py", f"checkpoint={run}/checkpoints/last.pt", f"hydra.run.dir={tmp_path / 'e1'}",
                   cwd=tmp_path, env=env)
    assert refused.returncode == 2 and "dataset._target_='myplug.Stripes'" in refused.stderr
    assert "trusted_packages=[pkg]" in refused.stderr
    trusted = _run("evaluate.py", f"checkpoint={run}/checkpoints/last.pt", "trusted_packages=[myplug]",
                   f"hydra.run.dir={tmp_path / 'e2'}", cwd=tmp_path, env=env)
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout.strip().splitlines()[-1])["test/acc"] == pytest.approx(summary["final"]["test/acc"])


def _run(script: str, *args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=300)


def _run_in_terminal(args: list[str], cwd: Path) -> str:
    """Run a command with stdout and stderr on a pseudo-terminal; returns what it printed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    proc = subprocess.Popen(args, cwd=cwd, stdin=follower, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=300)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_progress_bar_on_a_terminal_only(tmp_path):
    args = [*TINY, "trainer.epochs=2"]
    shown = _run_in_terminal([sys.executable, str(ROOT / "train.py"), *args, f"hydra.run.dir={tmp_path / 'tty'}"],
                             tmp_path)
    assert "epoch 1/2:" in shown and "batch/s" in shown  # tqdm's bar with its rate
    assert "epoch 2/2 | loss" in shown  # the epoch line keeps its form
    piped = run_entry("train.py", *TINY, "trainer.epochs=2", f"hydra.run.dir={tmp_path / 'pipe'}", cwd=tmp_path)
    assert "batch/s" not in piped.stdout + piped.stderr
    swept = _run_in_terminal([sys.executable, str(ROOT / "train.py"), "-m", *args, "seed=1",
                              f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert "batch/s" not in swept and "epoch 2/2 | loss" in swept


def test_python_api_without_the_command_line(tmp_path):
    summary = sat.train("experiment=quickstart trainer.epochs=4 method.start_epoch=2", output_dir=tmp_path / "q")
    result = sat.evaluate("checkpoint=" + summary["output_dir"] + "/checkpoints/last.pt", output_dir=tmp_path / "e")
    with pytest.raises(sat.errors.UserError) as bad:
        sat.train("trainer.batch_size=0", output_dir=tmp_path / "bad")
    assert summary["status"] == "finished" and summary["choices"]["method"] == "sat"
    assert summary["method"]["start_epoch"] == 2  # the overrides string reached the method
    assert result["test/acc"] == pytest.approx(summary["final"]["test/acc"])
    assert str(bad.value) == "trainer.batch_size=0 is out of range; accepted: an integer >= 1"
    assert "epoch 4/4 | loss" in (tmp_path / "q" / "train.log").read_text()  # the same logging as train.py
    assert (tmp_path / "q" / ".hydra" / "config.yaml").is_file()


@pytest.mark.parametrize("logger", ["csv", "wandb", "none"])
def test_loggers_are_a_config_group(tmp_path, logger):
    run = tmp_path / "run"
    if logger == "wandb":  # in its own process: wandb keeps process-wide state (a service, its settings)
        run_entry("train.py", *TINY, f"logger={logger}", f"hydra.run.dir={run}", cwd=tmp_path,
                  env_extra={"WANDB_SILENT": "true"})
    else:
        sat.train([*TINY, f"logger={logger}"], output_dir=run)
    assert len(read_metrics(run)) == 2  # always written
    events = list(run.glob("events.out.tfevents.*"))
    if logger == "csv":
        rows = list(csv.DictReader(open(run / "metrics.csv")))
        assert [r["epoch"] for r in rows] == ["1", "2"] and "test/acc" in rows[0] and not events
    elif logger == "wandb":  # offline: no network, no account
        offline = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
        assert offline and (run / "wandb_id.txt").read_text().strip() in offline[0].name and not events
    else:
        assert not events and not (run / "metrics.csv").exists()
