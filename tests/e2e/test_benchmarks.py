"""The GPU check and the profiler helper run end to end on the CPU at tiny sizes, and
need no Hydra (the GPU machine has none). Timings are not checked: only that every row
is measured and the outputs are whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHON=sys.executable)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def test_gpu_check_cpu_smoke(tmp_path):
    # --deadline: on a loaded CI machine rows must not be skipped for time; this checks function only
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), "--cpu-smoke", "--deadline", "600",
                           "--out", str(tmp_path / "bench"), "--ckpt-dir", str(tmp_path)],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=700)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("| row | ours |") == 1  # one table
    result = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.md").read_text().strip() == proc.stdout.strip()
    meta, rows = result["meta"], {r["row"]: r for r in result["rows"]}
    assert meta["status"] == "complete" and meta["hydra_imported"] == []
    assert not [name for name, r in rows.items() if str(r["ours"]).startswith("skipped")]
    assert not list(tmp_path.glob("sat_bench_ckpt_*"))  # the timed checkpoints are cleaned up

    def row(*words):
        found = [r for name, r in rows.items() if all(w in name for w in words)]
        assert len(found) == 1, (words, list(rows))
        return found[0]

    for words in [("ResNet-34", "(eager)"), ("ResNet-18 w2 ", "(eager)"), ("ResNet-18 w4 ", "(eager)"),
                  ("ResNet-18 w2 ", "(compiled)"), ("TRADES+SAT", "steps img/s"), ("PGD-", "attack.py"),
                  ("2 concurrent",), ("4 concurrent",)]:
        r = row(*words)
        assert r["ours"] > 0 and r["reference"] > 0, r
        # concurrent jobs: the work done together over the same work one job at a time; else ours / reference
        concurrent = words[0].endswith("concurrent")
        expected = result["rates"][f"share{words[0][0]}"] if concurrent else r["ours"] / r["reference"]
        assert r["speedup"] == pytest.approx(expected, rel=1e-6), r
    for what in ("ablation: fused SGD", "ablation: no channels-last", "ablation: fp32", "ablation: compiled"):
        assert row("ResNet-34", what)["ours"] > 0
    assert row("epoch split")["extra"]["checkpoint_s"] > 0
    for words in [("implied: ResNet-34",), ("implied: TRADES",), ("implied: double-descent",)]:
        assert row(*words)["ours"]
    assert set(result["rates"]) >= {"r34/eager", "r34/reference", "trades/eager", "share2", "share4"}


@pytest.mark.parametrize("args,limit", [(["--cpu-smoke"], "120"), (["--cpu-smoke", "--deadline", "600"], "640"),
                                        (["--deadline", "300"], "340"), ([], "460")])
def test_gpu_check_stops_its_run_after_the_caller_s_deadline(tmp_path, args, limit):
    """The script's backstop (``timeout``) comes 40 s after the deadline gpu_bench.py keeps
    to: a caller's longer deadline (the smoke test's on a loaded machine) is not cut at 120 s."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("timeout", "nvidia-smi"):  # record the command instead of running gpu_bench.py
        (fake / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {tmp_path}/calls\n')
        (fake / tool).chmod(0o755)
    env = dict(_env(), PATH=f"{fake}:{os.environ['PATH']}")
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), *args, "--out", str(tmp_path / "bench")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (call,) = [c for c in (tmp_path / "calls").read_text().splitlines() if c.startswith("timeout ")]
    assert call.split()[1:5] == ["-s", "TERM", "-k", "10"] and call.split()[5] == limit, call
    assert call.endswith(" ".join([*args, "--out", str(tmp_path / "bench")]))


def test_gpu_check_refuses_a_deadline_that_is_not_seconds(tmp_path):
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), "--cpu-smoke", "--deadline", "soon"], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--deadline soon is not a positive number of seconds" in proc.stderr


def test_refusal_time_measures_every_typo(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "refusal_time.py"), "--reps", "1", "--json",
                           str(tmp_path / "r.json")], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # (each typo was refused with exit 2 and one line)
    rows = {r["what"]: r for r in json.loads((tmp_path / "r.json").read_text())["rows"]}
    assert len(rows) == 6 and rows["import torch"]["ratio_to_import_torch"] == 1.0
    assert all(r["median_s"] > 0 for r in rows.values())
    assert list(tmp_path.iterdir()) == [tmp_path / "r.json"]  # the refused runs left nothing


def test_the_memory_estimate_is_a_lower_bound_of_a_real_step(tmp_path):
    """sat.tasks.budget.estimate against one real training step's peak (each in a fresh
    process): never above it (a run that fits is never refused), and not far below."""
    proc = subprocess.run([sys.executable, str(BENCH / "memory_estimate.py"), "--combos", "resnet18:32:64",
                           "--json", str(tmp_path / "m.json")], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = json.loads((tmp_path / "m.json").read_text())["rows"]
    assert row["combo"] == "resnet18:32:64" and row["estimate_mib"] > 50
    assert 0.3 < row["ratio"] <= 1.0, row  # measured on the 2-core machine: 0.51


def test_profile_step_cpu():
    proc = subprocess.run([sys.executable, str(BENCH / "profile_step.py"), "--device", "cpu", "--model", "r18",
                           "--width", "2", "--images", "256", "--batch", "32", "--steps", "2", "--warmup", "1",
                           "--top", "5"], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for text in ("steps profiled", "aten ops per step", "top by self CPU time", "most frequent aten ops"):
        assert text in proc.stdout


def test_benchmarks_import_no_hydra():
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import gpu_bench, profile_step, data_pipeline, "
            "trades_step; bad = [m for m in sys.modules if m.split('.')[0] in ('hydra', 'omegaconf', 'antlr4')]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_width_interpolation():
    sys.path.insert(0, str(BENCH))
    try:
        from gpu_bench import _interp
    finally:
        sys.path.remove(str(BENCH))
    points = [(4, 1000.0), (16, 400.0), (64, 100.0)]
    assert _interp(points, 16) == pytest.approx(400.0)
    assert _interp(points, 1) == 1000.0  # narrower than measured: the narrowest's rate
    assert _interp(points, 8) == pytest.approx((1000.0 * 400.0) ** 0.5)  # halfway in log width
    assert _interp(points, 128) == pytest.approx(25.0)  # wider: work grows as width squared
