"""sat.report on a tiny real dd_digits sweep (2 widths x 2 methods through ``train.py -m``
and the joblib launcher), on a partly finished copy of it, and its pieces."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_entry
from sat.report import Point, expand_grid, interpolation_threshold, main, report

WIDTHS = (8, 32)
EPOCHS = 3


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("dd")
    root = cwd / "sweep"
    run_entry("train.py", "-m", "experiment=dd_digits", "method=ce,sat", f"model.width={','.join(map(str, WIDTHS))}",
              "seed=0", f"trainer.epochs={EPOCHS}", "device=cpu", f"hydra.sweep.dir={root}", cwd=cwd)
    return root


def run_dir(root: Path, method: str, width: int) -> Path:
    """A run's folder: its overrides (seed excluded), then the seed."""
    return root / f"method={method},model.width={width},trainer.epochs={EPOCHS},seed=0"


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_ran_with_joblib_and_logs_curves(sweep):
    assert "JoblibLauncher" in (sweep / "multirun.yaml").read_text()
    runs = [run_dir(sweep, m, w) for m in ("ce", "sat") for w in WIDTHS]
    assert sorted(p.parent for p in sweep.glob("*/summary.json")) == sorted(runs)
    for run in runs:
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert [x["epoch"] for x in lines] == list(range(1, EPOCHS + 1))
        assert all(0 <= x["train/error"] <= 1 and 0 <= x["test/error"] <= 1 for x in lines)
        assert list(run.glob("events.out.tfevents.*"))


def test_report_writes_csv_and_figures(sweep, tmp_path, capsys):
    assert main([str(sweep), "--out", str(tmp_path), "--widths", "8"]) == 0
    rows = read_csv(tmp_path / "runs.csv")
    assert [(r["method"], int(r["width"]), r["seed"], r["status"]) for r in rows] == [
        (m, w, "0", "done") for m in ("ce", "sat") for w in WIDTHS]
    for r in rows:
        width = int(r["width"])
        assert int(r["params"]) == 64 * width + width + width * 10 + 10  # MLP 64 -> width -> 10
        assert int(r["epochs"]) == EPOCHS
        summary = json.loads((sweep / r["run"] / "summary.json").read_text())
        assert float(r["test_error"]) == pytest.approx(1 - summary["final"]["test/acc"], abs=1e-6)
        assert float(r["train_error_noisy_labels"]) == pytest.approx(1 - summary["final"]["train/acc"], abs=1e-6)
        assert float(r["best_test_error"]) <= float(r["test_error"]) + 1e-9
        if r["method"] == "sat":  # the effective, width-scaled hparams (reference width 128)
            assert float(r["alpha"]) == pytest.approx(0.9 ** (width / 128), rel=1e-5)
            assert int(r["start_epoch"]) == int(40 * 128 / width)
        else:
            assert r["alpha"] == ""
    for name in ("test_error_vs_width.png", "test_error_vs_epoch.png", "test_error_heatmap.png"):
        assert is_png(tmp_path / name), name
    out = capsys.readouterr().out
    assert "4 finished run(s); 0 missing or unfinished" in out


def test_report_names_missing_and_unfinished_runs(sweep, tmp_path):
    partial = tmp_path / "sweep"
    shutil.copytree(sweep, partial)
    (run_dir(partial, "sat", 32) / "summary.json").unlink()  # still running
    shutil.rmtree(run_dir(partial, "ce", 8))  # never started
    result = report(partial)
    assert sorted(status for status, _ in result["incomplete"]) == ["not started", "unfinished"]
    where = dict(result["incomplete"])
    assert "method=ce" in where["not started"] and "model.width=8" in where["not started"]
    assert f"epoch {EPOCHS} logged" in where["unfinished"]
    rows = read_csv(partial / "report" / "runs.csv")
    assert sorted((r["method"], r["width"], r["status"]) for r in rows) == [
        ("ce", "32", "done"), ("sat", "32", "unfinished"), ("sat", "8", "done")]
    assert all(is_png(partial / "report" / f) for f in result["figures"]) and result["figures"]


def test_expand_grid_like_the_basic_sweeper():
    jobs = expand_grid({"method": "ce,sat", "model.width": "range(1,4)", "seed": 0}, ["experiment=x", "seed=1,2"])
    assert len(jobs) == 2 * 3 * 2
    assert ["method=ce", "model.width=1", "seed=1", "experiment=x"] in jobs  # the command line's seeds win


def test_interpolation_threshold_is_the_smallest_width_that_fits():
    def pt(width, train):
        return Point(width, None, 2, np.array([0.1, 0.1]), np.array(train))

    points = [pt(8, [0.2, 0.2]), pt(32, [0.04, 0.0]), pt(64, [0.0, 0.005]), pt(128, [0.0, 0.0])]
    assert interpolation_threshold(points, 0.01) == 64
    assert interpolation_threshold(points, 0.05) == 32
    assert interpolation_threshold(points[:1], 0.01) is None
