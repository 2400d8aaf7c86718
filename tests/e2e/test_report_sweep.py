"""sat.report on two tiny real sweeps through ``train.py -m`` on digits:

- double descent: ``experiment=dd_digits method=ce,sat model.width=8,32`` (its jobs in one
  process, ``hydra/launcher=basic``: the parallel launcher the experiment chooses is the
  quickstart sweep's, tests/conftest.py), complete and partly finished;
- comparison: ``experiment=quickstart method=ce,sat noise.rate=0.2,0.4 seed=0,1``
  (issue 11's command, smaller): four groups, a noise column, the comparison table.

Both use ``debug=fast`` (2 epochs, and the per-sample branch of every method engaged).
Settings are read from the runs, never from folder names. The last test checks the
run-folder contract itself (folder names that paste into Hydra overrides, the
summary schema); it passes once train.py writes them."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from pathlib import Path

import pytest
from conftest import run_entry

from sat.report import format_report, make_report, read_runs

WIDTHS = (8, 32)


@pytest.fixture(scope="module")
def dd_sweep(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("dd")
    root = cwd / "sweep"
    run_entry("train.py", "-m", "experiment=dd_digits", "method=ce,sat", f"model.width={','.join(map(str, WIDTHS))}",
              "seed=0", "debug=fast", "device=cpu", "hydra/launcher=basic", f"hydra.sweep.dir={root}", cwd=cwd)
    return root


@pytest.fixture(scope="module")
def noise_sweep(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("noise")
    root = cwd / "sweep"
    run_entry("train.py", "-m", "experiment=quickstart", "method=ce,sat", "noise.rate=0.2,0.4", "seed=0,1",
              "debug=fast", "device=cpu", "hydra/launcher=basic", f"hydra.sweep.dir={root}", cwd=cwd)
    return root


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def summary(run_folder: Path) -> dict:
    return json.loads((run_folder / "summary.json").read_text())


def at_best_val(s: dict) -> dict | None:
    return s["at_best_val"] if "at_best_val" in s else s.get("best")  # "best": its name before the contract


def run_folder(root: Path, method: str, width: int) -> Path:
    (run,) = [r for r in read_runs(root) if r.choices["method"] == method and r.settings["model.width"] == width]
    return run.path


def test_dd_sweep_report_writes_csv_and_figures(dd_sweep, tmp_path):
    report = make_report(dd_sweep, tmp_path)
    assert "BasicLauncher" in (dd_sweep / "multirun.yaml").read_text()  # the jobs in this process, in order
    assert report.grouping.columns == ["method", "model.width"]
    rows = read_csv(tmp_path / "runs.csv")
    assert [(r["method"], int(r["model.width"]), r["seed"], r["status"]) for r in rows] == [
        (m, w, "0", "finished") for m in ("ce", "sat") for w in WIDTHS]
    for r in rows:
        width, s = int(r["model.width"]), summary(dd_sweep / r["run"])
        assert int(r["params"]) == 64 * width + width + width * 10 + 10  # MLP 64 -> width -> 10
        assert int(r["epochs_done"]) == int(r["epochs"]) == 2
        assert float(r["test_error_pct"]) == pytest.approx(100 * (1 - s["final"]["test/acc"]), abs=1e-3)
        assert float(r["train_error_pct"]) == pytest.approx(100 * (1 - s["final"]["train/acc"]), abs=1e-3)
        assert float(r["min_test_error_over_epochs_pct"]) <= float(r["test_error_pct"]) + 1e-9
        if r["method"] == "sat":  # the method's values as the run used them (width-scaled)
            assert float(r["effective.alpha"]) == pytest.approx(s["method"]["alpha"], rel=1e-4)
        else:
            assert r["effective.alpha"] == ""
    assert [(s.label, [p.width for p in s.points]) for s in report.series] == [
        ("method=ce", list(WIDTHS)), ("method=sat", list(WIDTHS))]
    for name in ("test_error_vs_width", "test_error_vs_epoch", "test_error_heatmap"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
        assert (tmp_path / f"{name}.pdf").read_bytes()[:5] == b"%PDF-", name
    assert "runs: 4 finished" in format_report(report).splitlines()


def test_dd_sweep_partly_finished_names_every_missing_run(dd_sweep, tmp_path):
    partial = tmp_path / "sweep"
    shutil.copytree(dd_sweep, partial)
    running = run_folder(partial, "sat", 32)
    s = summary(running)
    (running / "summary.json").write_text(json.dumps({**s, "status": "running", "epochs_done": 0, "final": {}}))
    failed = run_folder(partial, "ce", 32)
    (failed / "summary.json").write_text(json.dumps({**summary(failed), "status": "failed",
                                                     "error": "RuntimeError: boom"}))
    shutil.rmtree(run_folder(partial, "ce", 8))  # never started
    report = make_report(partial)
    printed = format_report(report).splitlines()
    assert "runs: 1 finished, 1 failed, 1 killed (no process holds its lock; resumable from its last checkpoint), " \
           "1 not started" in printed  # its summary says running, but no process holds its lock
    (missing,) = report.not_started
    assert {"method=ce", "model.width=8"} <= set(missing[1])
    assert any(line.startswith("  failed: ") and line.endswith(": RuntimeError: boom") for line in printed)
    assert any(line.startswith("  killed (") and line.endswith(": epoch 2 of 2 logged") for line in printed)
    rows = read_csv(partial / "report" / "runs.csv")
    assert sorted((r["method"], r["model.width"], r["status"]) for r in rows) == [
        ("ce", "32", "failed"), ("sat", "32", "killed"), ("sat", "8", "finished")]
    assert [(s.label, [p.width for p in s.points]) for s in report.series] == [("method=sat", [8])]


def test_noise_sweep_gives_four_groups_with_a_noise_column_and_the_comparison(noise_sweep, tmp_path):
    report = make_report(noise_sweep, tmp_path)
    assert report.grouping.columns == ["method", "noise.rate"]
    rows = read_csv(tmp_path / "runs.csv")
    assert sorted((r["method"], r["noise.rate"], r["seed"]) for r in rows) == [
        (m, rate, seed) for m in ("ce", "sat") for rate in ("0.2", "0.4") for seed in ("0", "1")]
    assert [len(g.runs) for g in report.grouping.groups] == [2, 2, 2, 2]
    for r in rows:  # each run's own noise rate reached its noise (realised error ~ rate * 9/10, uniform)
        assert float(r["noise_realised_error_pct"]) == pytest.approx(90 * float(r["noise.rate"]), abs=3)

    cells = {(r["method"], r["noise.rate"]): r for r in read_csv(tmp_path / "comparison.csv")}
    assert sorted(cells) == [("ce", "0.2"), ("ce", "0.4"), ("sat", "0.2"), ("sat", "0.4")]
    md = (tmp_path / "comparison.md").read_text()
    for (method, rate), cell in cells.items():
        summaries = [summary(noise_sweep / r["run"]) for r in rows if (r["method"], r["noise.rate"]) == (method, rate)]
        final = [100 * s["final"]["test/acc"] for s in summaries]
        best = [100 * at_best_val(s)["test/acc"] for s in summaries]
        assert float(cell["final_test_acc_pct_mean"]) == pytest.approx(statistics.mean(final), abs=1e-3)
        assert float(cell["final_test_acc_pct_std"]) == pytest.approx(statistics.stdev(final), abs=1e-3)
        assert float(cell["test_acc_at_best_val_pct_mean"]) == pytest.approx(statistics.mean(best), abs=1e-3)
        assert cell["seeds"] == "0 1"
        assert f"{statistics.mean(final):.2f} ± {statistics.stdev(final):.2f}" in md
    assert "| method | noise.rate=0.2 | noise.rate=0.4 |" in md
    assert not (tmp_path / "test_error_vs_width.png").exists() and (tmp_path / "test_error_vs_epoch.pdf").is_file()


def test_sweep_runs_follow_the_run_folder_contract(dd_sweep, noise_sweep):
    """Needs train.py's side of the contract: job folders named ``key-value+...+seed-N``
    (they paste unquoted into ``checkpoint=``), ``summary.json`` with ``status``,
    ``epochs_done`` and ``at_best_val``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for root, has_val in ((dd_sweep, False), (noise_sweep, True)):
        for run in read_runs(root):
            name = run.path.name
            assert "=" not in name and "," not in name and name.endswith(f"seed-{run.seed}"), name
            checkpoint = f"{run.path}/checkpoints/last.pt"
            (parsed,) = OverridesParser.create().parse_overrides([f"checkpoint={checkpoint}"])
            assert parsed.value() == checkpoint
            s = summary(run.path)
            assert s["status"] == "finished" and "error" not in s
            assert s["epochs_done"] == s["epochs"] == 2
            assert set(s["choices"]) >= {"method", "noise", "model", "dataset"}
            assert "best" not in s and "at_best_val" in s
            assert (s["at_best_val"] is not None) == has_val
