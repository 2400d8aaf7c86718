"""A method of one's own, from a package outside sat (examples/plugin: ``myplug/selc.py``
and ``conf/method/selc.yaml``, SELC with per-sample targets and a delayed phase): trained
with ``debug=fast`` (which reaches its later phase), stopped by SIGTERM under two-process
DDP (gloo) and continued by the same command to exactly the single-process run, rebuilt
from its checkpoint for a report, and summed up by ``sat.report``."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, read_metrics, run_entry
from two_processes import rank1_pid, torchrun

import sat
from sat.report import read_runs
from sat.report.cli import main as report_main
from sat.run.checkpoint import load_checkpoint

PLUGIN = ROOT / "examples" / "plugin"
# 500 training stripes in batches of 8 (63 steps an epoch: a signal after epoch 1 lands in epoch 2)
RUN = [f"hydra.searchpath=[file://{PLUGIN / 'conf'}]", "method=selc", "model=tiny", "dataset=stripes", "augment=none",
       "noise.rate=0.3", "debug=fast", "trainer.batch_size=8", "trainer.num_threads=1", "device=cpu", "logger=csv"]
ENV = {"PYTHONPATH": os.pathsep.join([str(PLUGIN), os.environ.get("PYTHONPATH", "")])}


def _rows(run: Path) -> list[dict]:
    return read_metrics(run, timings=False)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """``train.py -m`` of the plugin's method, one job: what ``sat.report`` reads."""
    cwd = tmp_path_factory.mktemp("plugin")
    run_entry("train.py", "-m", *RUN, f"hydra.sweep.dir={cwd / 'sweep'}", cwd=cwd, env_extra=ENV)
    return cwd / "sweep"


def _job(sweep: Path) -> Path:
    (run,) = [p for p in sweep.iterdir() if (p / "summary.json").is_file()]
    return run


def test_debug_fast_reaches_the_plugin_method_s_later_phase(sweep):
    run = _job(sweep)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["method"] == {"alpha": 0.9, "start_epoch": 1}  # 40 -> 1
    assert "myplug" in summary["packages"] and set(summary["headline"]) == {"test/acc", "sat/label_recovery"}
    rows = _rows(run)  # the targets stay one-hot through the CE epoch, then move: the later phase ran
    assert rows[0]["sat/target_on_given"] == 1.0 and rows[1]["sat/target_on_given"] < 1.0
    assert (run / "label_errors.csv").is_file()  # the method's soft labels, exported


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker's rank in /proc")
def test_under_ddp_a_signal_stops_it_and_the_same_command_continues_to_the_single_process_run(sweep, tmp_path):
    run = tmp_path / "ddp"
    args = [*RUN, f"hydra.run.dir={run}"]
    proc = torchrun(args, tmp_path, popen=True, env_extra=ENV)
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").is_file() or not (run / "metrics.jsonl").read_text():
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
        time.sleep(0.02)
    os.kill(rank1_pid(proc.pid), signal.SIGTERM)  # epoch 1 is logged: it lands in epoch 2
    out = proc.communicate(timeout=120)[0]
    assert "received SIGTERM" in out and json.loads((run / "summary.json").read_text())["status"] == "preempted", out
    assert load_checkpoint(run / "checkpoints/last.pt")["partial"] is not None  # stopped mid-epoch
    again = torchrun(args, tmp_path, env_extra=ENV)  # the requeued job: the same command
    assert "continuing from" in again.stdout + again.stderr
    # the per-sample targets went through the global batch: one process's numbers (up to the order of float sums)
    single = _job(sweep)
    assert [r["epoch"] for r in _rows(run)] == [1, 2]
    for ddp_row, row in zip(_rows(run), _rows(single)):
        assert ddp_row == pytest.approx(row, rel=1e-5)
    a, b = load_checkpoint(run / "checkpoints/last.pt"), load_checkpoint(single / "checkpoints/last.pt")
    assert torch.allclose(a["method"]["targets"], b["method"]["targets"], atol=1e-5)
    assert not torch.equal(a["method"]["targets"], torch.nn.functional.one_hot(a["method"]["targets"].argmax(1), 4).float())


def test_rebuilt_from_its_checkpoint_and_reported(sweep, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN))
    run = _job(sweep)
    result = sat.evaluate([f"checkpoint={run}/checkpoints/last.pt", "report=label_errors", "trusted_packages=[myplug]",
                           f"hydra.searchpath=[file://{PLUGIN / 'conf'}]", "device=cpu"], output_dir=tmp_path / "e")
    assert result["source"] == "soft targets"  # the plugin's method rebuilt from its checkpoint, its soft_labels() read
    assert report_main([str(sweep), "--out", str(tmp_path / "rep")]) == 0
    (record,) = read_runs(sweep)
    assert record.choices["method"] == "selc"
    assert "selc" in (tmp_path / "rep" / "runs.csv").read_text()
