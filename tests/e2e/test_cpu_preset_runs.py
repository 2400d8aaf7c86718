"""The real-image CPU presets through train.py on small CIFAR files in the real format, and the CPU throughput
benchmark at tiny sizes. CI never reads the dev set: every file here is written by the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from cifar_files import write_cifar10
from conftest import ROOT, run_entry


@pytest.mark.parametrize("experiment, method", [("cifar10_cpu", "sat"), ("ssl_cifar10_cpu", "ssl_sat")])
def test_each_preset_trains_through_train_py(tmp_path, experiment, method):
    """Two epochs of each preset on 120 small real-format images, the method's per-sample branch reached (debug=fast)."""
    write_cifar10(tmp_path / "data", per_batch=30, test=40)
    run = tmp_path / "run"
    run_entry("train.py", f"experiment={experiment}", f"method={method}", f"paths.data_dir={tmp_path / 'data'}",
              "dataset.num_train=120", "dataset.val_size=20", "model.width=4", "trainer.batch_size=32",
              "debug=fast", "logger=none", "device=cpu", f"hydra.run.dir={run}", cwd=tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["noise"]["num_train"] == 100
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2] and all(np.isfinite(m["train/loss"]) for m in lines)
    if method == "sat":
        assert lines[-1]["sat/target_on_given"] < 1.0  # the soft targets moved in the second epoch
    else:
        assert "test/knn_acc" in lines[-1]


def test_cpu_throughput_benchmark_smoke(tmp_path):
    """benchmarks/cpu_throughput.py at tiny sizes: every variant timed, ratios consistent. Speeds not checked."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cpu_throughput.py"), "--images", "48",
                           "--repeats", "1", "--set", "model.width=2", "trainer.batch_size=16", "--out", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.with_suffix(".json").read_text())
    assert out.with_suffix(".md").read_text().strip() == proc.stdout.strip()
    rows = result["rows"]
    assert {r["preset"] for r in rows} == {"cifar10_cpu", "ssl_cifar10_cpu"}
    for preset in ("cifar10_cpu", "ssl_cifar10_cpu"):
        mine = {r["variant"]: r for r in rows if r["preset"] == preset}
        assert len(mine) == 5
        reference = next(r for name, r in mine.items() if name.startswith("reference"))
        assert reference["ratio_wall"] == reference["ratio_cpu"] == 1.0
        preset_row = mine["ours (preset)"]
        assert preset_row["precision"] == "bf16" and preset_row["channels_last"] is True
        assert mine["ours, fp32"]["precision"] == "fp32" and mine["ours, fp32"]["channels_last"] is False
        for r in mine.values():
            assert r["img_per_s_wall"] > 0 and r["img_per_s_cpu"] > 0
            assert r["ratio_wall"] == pytest.approx(r["img_per_s_wall"] / reference["img_per_s_wall"])
    assert result["meta"]["features"]["onednn"] in (True, False)
