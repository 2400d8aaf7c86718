"""sat.report on hand-built run folders that follow the run-folder contract
(tests/run_folders.py): reading, grouping, the comparison table, status, figures and
the command line. Independent of how train.py names folders today; the real sweeps
through train.py are in test_report_sweep.py."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from run_folders import make_run

from sat.errors import UserError
from sat.report import (
    STATUS_LABELS,
    WidthPoint,
    format_report,
    group_runs,
    interpolation_threshold,
    main,
    make_report,
    read_run,
    read_runs,
    title,
    width_series,
)

ROOT = Path(__file__).resolve().parents[2]


def folder(**settings) -> str:
    """A sweep job folder as the contract names it: ``method-sat+noise.rate-0.2+seed-1``."""
    seed = settings.pop("seed", 0)
    return "+".join([*(f"{k}-{v}" for k, v in settings.items()), f"seed-{seed}"])


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def png_dpi(path: Path) -> float:
    """The resolution a PNG declares (its pHYs chunk, pixels per metre)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    i = 8
    while i < len(data):
        length, kind = struct.unpack(">I4s", data[i:i + 8])
        if kind == b"pHYs":
            x, _, unit = struct.unpack(">IIB", data[i + 8:i + 17])
            assert unit == 1  # metres
            return x * 0.0254
        i += 12 + length
    raise AssertionError(f"{path} declares no resolution")


def is_pdf(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:5] == b"%PDF-"


# --- reading ------------------------------------------------------------------------------


def test_a_run_folder_becomes_plain_values(tmp_path):
    path = make_run(tmp_path, folder(method="sat", seed=3), method="sat", rate=0.4, width=32, seed=3,
                    test_acc=[0.5, 0.8, 0.7], val_acc=[0.4, 0.9, 0.6],
                    effective={"alpha": 0.95, "start_epoch": 1, "base_alpha": 0.9})
    run = read_run(path)
    assert run.status == "finished" and run.seed == 3 and run.name == "exp"
    s = run.settings
    assert (s["method.alpha"], s["noise.rate"], s["model.width"], s["trainer.epochs"]) == (0.9, 0.4, 32, 3)
    assert s["noise.seed"] == 3 and s["method.width"] == 32  # interpolations resolved ...
    assert {"noise.seed", "method.width"} <= run.derived  # ... and known to repeat another setting
    for key in ("seed", "device", "name", "resume", "trainer.num_threads", "trainer.eval_batch_size",
                "trainer.checkpoint_every", "paths.data_dir", "paths.output_dir"):
        assert key not in s, key  # no result depends on them
    assert run.choices == {"debug": "null", "experiment": "exp", "augment": "none", "optimizer": "sgd",
                           "method": "sat", "noise": "uniform", "model": "mlp", "dataset": "digits"}
    assert run.overrides == ("method=sat", "noise.rate=0.4", "seed=3")
    assert run.epochs == [1, 2, 3] and run.epochs_done == 3
    assert run.curve("test/error") == pytest.approx([0.5, 0.2, 0.3])
    assert run.final["test/acc"] == 0.7
    assert run.at_best_val == {"epoch": 2, "val/acc": 0.9, "test/acc": 0.8}
    assert run.effective["alpha"] == 0.95


def test_a_folder_without_runs_is_a_user_error(tmp_path, capsys):
    with pytest.raises(UserError, match="no runs below"):
        read_runs(tmp_path)
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no runs below") and err.count("\n") == 1


def test_outputs_of_evaluate_or_attack_are_not_runs(tmp_path):
    make_run(tmp_path, "run")
    evaluation = tmp_path / "run" / "evaluations" / "2026-01-01_12-00-00" / ".hydra"
    evaluation.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"name": "evaluate", "checkpoint": "x.pt", "seed": 0}), evaluation / "config.yaml")
    assert [r.path.name for r in read_runs(tmp_path)] == ["run"]


def test_a_run_killed_while_writing_keeps_what_it_wrote(tmp_path):
    path = make_run(tmp_path, "a", status="running")
    with open(path / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 4, "test/acc"')  # cut off
    (path / "summary.json").write_text('{"status": "fin')
    run = read_run(path)
    assert run.epochs == [1, 2, 3]
    assert run.status == "unknown" and "not valid JSON" in run.error


# --- grouping -----------------------------------------------------------------------------


def two_by_two(root: Path, seeds=(0, 1)) -> None:
    """method=ce,sat x noise.rate=0.0,0.6 x seeds, each group's accuracy its own."""
    for m, method in enumerate(("ce", "sat")):
        for r, rate in enumerate((0.0, 0.6)):
            for seed in seeds:
                acc = 0.5 + 0.1 * m - 0.2 * r + 0.01 * seed
                make_run(root, folder(method=method, **{"noise.rate": rate}, seed=seed), method=method, rate=rate,
                         seed=seed, test_acc=[acc - 0.1, acc])


def test_two_methods_by_two_noise_rates_make_four_groups_with_a_noise_column(tmp_path):
    two_by_two(tmp_path)
    report = make_report(tmp_path)
    assert report.grouping.columns == ["method", "noise.rate"]  # noise.seed follows the seed: not a group
    assert [(g.values["method"], g.values["noise.rate"], len(g.runs)) for g in report.grouping.groups] == [
        ("ce", 0.0, 2), ("ce", 0.6, 2), ("sat", 0.0, 2), ("sat", 0.6, 2)]
    rows = read_csv(report.out / "runs.csv")
    assert list(rows[0])[:5] == ["run", "status", "method", "noise.rate", "seed"]
    assert [(r["method"], r["noise.rate"], r["seed"]) for r in rows] == [
        (m, rate, s) for m in ("ce", "sat") for rate in ("0", "0.6") for s in ("0", "1")]
    for r in rows:  # each row's numbers are its own run's
        acc = 0.5 + 0.1 * (r["method"] == "sat") - 0.2 * (r["noise.rate"] == "0.6") + 0.01 * int(r["seed"])
        assert float(r["test_acc_pct"]) == pytest.approx(100 * acc, abs=1e-3)
        assert float(r["test_error_pct"]) == pytest.approx(100 - 100 * acc, abs=1e-3)
    printed = format_report(report)
    assert "4 group(s) by method, noise.rate" in printed
    assert not (report.out / "test_error_vs_width.png").exists()  # no width sweep, no width figure
    assert (report.out / "test_error_vs_epoch.png").is_file()


def test_runs_of_different_datasets_or_models_are_never_averaged(tmp_path):
    for dataset, model, acc in (("digits", "mlp", 0.9), ("synthetic", "mlp", 0.5), ("digits", "cnn", 0.7)):
        for seed in (0, 1):
            make_run(tmp_path, f"{dataset}-{model}/{folder(seed=seed)}", dataset=dataset, model=model, seed=seed,
                     test_acc=[acc + 0.02 * seed])
    report = make_report(tmp_path)
    assert report.grouping.columns == ["dataset", "model"]  # model._target_ follows the model option
    assert {(g.values["dataset"], g.values["model"]): [r.seed for r in g.runs] for g in report.grouping.groups} == {
        ("digits", "cnn"): [0, 1], ("digits", "mlp"): [0, 1], ("synthetic", "mlp"): [0, 1]}
    rows = read_csv(report.out / "comparison.csv")
    assert {(r["dataset"], r["model"]): float(r["final_test_acc_pct_mean"]) for r in rows} == pytest.approx({
        ("digits", "cnn"): 71.0, ("digits", "mlp"): 91.0, ("synthetic", "mlp"): 51.0})
    assert "digits" not in title(report.runs) and "mlp" not in title(report.runs)


def test_settings_that_do_not_change_results_make_no_groups(tmp_path):
    make_run(tmp_path, "a", device="cpu", num_threads=1, seed=0)
    make_run(tmp_path, "b/c", device="cuda:1", num_threads=8, seed=1)
    grouping = group_runs(read_runs(tmp_path))
    assert grouping.columns == [] and len(grouping.groups) == 1 and len(grouping.groups[0].runs) == 2
    make_run(tmp_path, "d", rate=0.6)
    assert group_runs(read_runs(tmp_path)).columns == ["noise.rate"]
    assert group_runs(read_runs(tmp_path), ignore=("noise.rate",)).columns == []  # --ignore


def test_a_run_of_an_older_version_is_in_the_group_of_its_settings(tmp_path):
    """Written before a class moved (its former path, an alias), before a setting existed
    (no ``loader`` node) and before a config group existed (no choice in it): the same
    settings as a run of today, so one group, not two."""
    older = make_run(tmp_path, folder(seed=0), seed=0, test_acc=[0.6])
    today = make_run(tmp_path, folder(seed=1), seed=1, test_acc=[0.7])
    assert OmegaConf.load(older / ".hydra/config.yaml").noise._target_ == "sat.data.noise.UniformLabelNoise"
    cfg = OmegaConf.load(today / ".hydra/config.yaml")
    cfg.noise._target_ = "sat.data.noise.label.UniformLabelNoise"  # the class's path since sat 0.4
    cfg.loader = {"kind": "auto", "num_workers": "auto", "decode": "auto"}  # settings added since, at their defaults
    OmegaConf.save(cfg, today / ".hydra/config.yaml")
    hydra = OmegaConf.load(today / ".hydra/hydra.yaml")
    hydra.hydra.runtime.choices.hparams_search = None  # a group added since, not used
    OmegaConf.save(hydra, today / ".hydra/hydra.yaml")
    grouping = group_runs(read_runs(tmp_path))
    assert grouping.columns == [] and [r.seed for r in grouping.groups[0].runs] == [0, 1]
    cfg.loader.kind = "stream"  # not the default: another group
    OmegaConf.save(cfg, today / ".hydra/config.yaml")
    assert group_runs(read_runs(tmp_path)).columns == ["loader.kind"]


def test_a_group_options_settings_are_columns_only_where_they_vary_within_it(tmp_path):
    make_run(tmp_path, "ce", method="ce")
    make_run(tmp_path, "sat", method="sat", alpha=0.9)
    assert group_runs(read_runs(tmp_path)).columns == ["method"]  # method.alpha only says "sat"
    make_run(tmp_path, "sat_slow", method="sat", alpha=0.99)
    grouping = group_runs(read_runs(tmp_path))
    assert grouping.columns == ["method", "method.alpha"]
    assert [(g.values["method"], g.values["method.alpha"]) for g in grouping.groups] == [
        ("ce", None), ("sat", 0.9), ("sat", 0.99)]


def test_titles_state_only_what_all_runs_share(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr("sat.report.figures.plot_epochs_by_group",
                        lambda curves, head, stem: drawn.append((head, [name for name, _ in curves])) or [])
    for rate in (0.0, 0.6):
        make_run(tmp_path, folder(**{"noise.rate": rate}), rate=rate, name="dd")
    make_report(tmp_path)
    (head, curves), = drawn
    assert head == "dd: digits, mlp width 16, uniform noise, sat, 3 epochs"  # no rate: the runs differ in it
    assert curves == ["noise.rate=0", "noise.rate=0.6"]  # the group in the legend
    runs = [r for r in read_runs(tmp_path) if r.settings["noise.rate"] == 0.6]
    assert title(runs) == "dd: digits, mlp width 16, uniform noise 0.6, sat, 3 epochs"
    assert (tmp_path / "report" / "comparison.md").read_text().startswith(f"# Comparison: {head}\n")


# --- the comparison -----------------------------------------------------------------------


def test_comparison_is_the_hand_computed_mean_and_std_over_seeds(tmp_path):
    # final test acc per seed (a - d, a, a + d): mean a, sample std d. The validation
    # accuracy peaks at epoch 2, where the test accuracy is b - e, b, b + e.
    cells = {("ce", 0.2): (0.74, 0.04, 0.82, 0.02), ("ce", 0.4): (0.60, 0.01, 0.66, 0.03),
             ("sat", 0.2): (0.80, 0.02, 0.81, 0.01), ("sat", 0.4): (0.76, 0.05, 0.70, 0.00)}
    for (method, rate), (a, d, b, e) in cells.items():
        for k, seed in enumerate((0, 1, 2)):
            make_run(tmp_path, folder(method=method, **{"noise.rate": rate}, seed=seed), method=method, rate=rate,
                     seed=seed, test_acc=[0.1, b + (k - 1) * e, a + (k - 1) * d], val_acc=[0.2, 0.9, 0.8])
    report = make_report(tmp_path)
    md = (report.out / "comparison.md").read_text()
    assert "(n = 3 seeds per cell)" in md
    final, at_best = md.split("## Final test accuracy (%)")[1].split("## Test accuracy at the best-validation epoch (%)")
    assert "| method | noise.rate=0.2 | noise.rate=0.4 |" in final
    assert "| ce | 74.00 ± 4.00 | 60.00 ± 1.00 |" in final
    assert "| sat | 80.00 ± 2.00 | 76.00 ± 5.00 |" in final
    assert "| ce | 82.00 ± 2.00 | 66.00 ± 3.00 |" in at_best
    assert "| sat | 81.00 ± 1.00 | 70.00 ± 0.00 |" in at_best
    rows = {(r["method"], r["noise.rate"]): r for r in read_csv(report.out / "comparison.csv")}
    for (method, rate), (a, d, b, e) in cells.items():
        r = rows[(method, str(rate))]
        assert float(r["final_test_acc_pct_mean"]) == pytest.approx(100 * a, abs=1e-3)
        assert float(r["final_test_acc_pct_std"]) == pytest.approx(100 * d, abs=1e-3)
        assert float(r["test_acc_at_best_val_pct_mean"]) == pytest.approx(100 * b, abs=1e-3)
        assert float(r["test_acc_at_best_val_pct_std"]) == pytest.approx(100 * e, abs=1e-3)
        assert (r["seeds"], r["final_test_acc_pct_n"]) == ("0 1 2", "3")
    assert md.split("## Final test accuracy (%)")[1].strip() in format_report(report)  # printed too


def test_comparison_gives_each_method_s_wall_time_in_minutes(tmp_path):
    for method, seconds in {"ce": (60, 120, 90), "sat": (300, 360, 330)}.items():
        for seed, wall in enumerate(seconds):
            path = make_run(tmp_path, folder(method=method, seed=seed), method=method, seed=seed)
            summary = json.loads((path / "summary.json").read_text())
            (path / "summary.json").write_text(json.dumps({**summary, "wall_time_s": wall}))
    report = make_report(tmp_path)
    wall = (report.out / "comparison.md").read_text().split("## Wall time per run (minutes)")[1]
    assert "| ce | 1.50 ± 0.50 |" in wall and "| sat | 5.50 ± 0.50 |" in wall
    rows = {r["method"]: r for r in read_csv(report.out / "comparison.csv")}
    assert (rows["ce"]["wall_time_min_mean"], rows["sat"]["wall_time_min_std"]) == ("1.5", "0.5")


def test_a_sweep_without_a_validation_split_gets_no_best_validation_table(tmp_path):
    for seed in (0, 1):
        make_run(tmp_path, folder(seed=seed), seed=seed, val_size=0, test_acc=[0.5, 0.6 + 0.1 * seed])
    report = make_report(tmp_path)
    md = (report.out / "comparison.md").read_text()
    assert "| all | 65.00 ± 7.07 |" in md and "| runs | uniform noise 0.2 |" in md
    assert "## Final test accuracy (%)" in md and "best-validation" not in md
    (row,) = read_csv(report.out / "comparison.csv")
    assert row["final_test_acc_pct_mean"] == "65.0" and not [k for k in row if "best_val" in k]
    printed = format_report(report)
    assert "test error (%)" in printed and "best val" not in printed and "best-validation" not in printed
    # one run with a validation split brings the table back
    make_run(tmp_path, folder(seed=2), seed=2, test_acc=[0.5, 0.7], val_acc=[0.6, 0.5])
    md = (make_report(tmp_path).out / "comparison.md").read_text()
    assert "## Test accuracy at the best-validation epoch (%)" in md


def test_no_output_calls_a_value_best_test_accuracy(tmp_path):
    two_by_two(tmp_path, seeds=(0,))
    report = make_report(tmp_path)
    texts = [f.read_text() for f in report.files if f.suffix in (".csv", ".md")] + [format_report(report)]
    assert all("best test" not in t.lower() and "best_test" not in t.lower() for t in texts)
    assert "test_acc_at_best_val_pct" in texts[0] and "test acc at best val epoch (%)" in texts[-1]


# --- status -------------------------------------------------------------------------------


def test_failed_preempted_running_and_silent_runs_are_told_apart(tmp_path):
    make_run(tmp_path, "done", seed=0, test_acc=[0.5, 0.6, 0.7])
    make_run(tmp_path, "oom", seed=1, test_acc=[0.5], status="failed",
             error="RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\n  File train.py, line 3")
    make_run(tmp_path, "requeued", seed=2, test_acc=[0.5, 0.6], status="preempted")
    busy = make_run(tmp_path, "busy", seed=3, test_acc=[0.5], status="running")
    make_run(tmp_path, "dead", seed=5, test_acc=[0.5, 0.6], status="running")  # OOM-killed: its lock went with it
    make_run(tmp_path, "no_summary", seed=4, test_acc=[], summary=False)
    lock = os.open(busy / ".lock", os.O_RDWR | os.O_CREAT)  # the training process of "busy", alive
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        report = make_report(tmp_path)
    finally:
        os.close(lock)
    printed = format_report(report).splitlines()
    assert ("runs: 1 finished, 1 failed, 1 preempted (resumable), 1 running, 1 killed (no process holds its lock; "
            "resumable from its last checkpoint), 1 no summary.json (stopped before training began)") in printed
    assert "  failed: oom: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB" in printed
    assert "  preempted (resumable): requeued: epoch 2 of 3 logged" in printed
    assert "  running: busy: epoch 1 of 3 logged" in printed  # its summary still says epoch 0
    assert f"  {STATUS_LABELS['killed']}: dead: epoch 2 of 3 logged" in printed
    assert f"  {STATUS_LABELS['unknown']}: no_summary: epoch 0 of 3 logged" in printed
    rows = {r["run"]: r for r in read_csv(report.out / "runs.csv")}
    assert {k: r["status"] for k, r in rows.items()} == {
        "done": "finished", "oom": "failed", "requeued": "preempted", "busy": "running", "dead": "killed",
        "no_summary": "unknown"}
    assert rows["oom"]["error"] == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert rows["busy"]["test_acc_pct"] == "" and rows["done"]["test_acc_pct"] == "70.0"
    (cmp_row,) = read_csv(report.out / "comparison.csv")  # only the finished run counts
    assert (cmp_row["seeds"], cmp_row["final_test_acc_pct_mean"]) == ("0", "70.0")


def test_jobs_of_a_sweeps_grid_without_a_folder_are_not_started(tmp_path):
    sweep = tmp_path / "multirun" / "x" / "2026-01-01" / "12-00-00"
    sweep.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"hydra": {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "max_batch_size": None,
                    "params": {"method": "ce,sat", "model.width": "range(8,11)"}},
        "overrides": {"task": ["experiment=x", "method=sat", "seed=0"]}}}), sweep / "multirun.yaml")
    for width in (8, 10):  # width 9 never started; method=ce is not a job: the command line said sat
        make_run(sweep, folder(method="sat", **{"model.width": width}), width=width,
                 overrides=["method=sat", f"model.width={width}", "experiment=x", "seed=0"])
    report = make_report(tmp_path / "multirun")
    assert report.not_started == [(sweep, ["method=sat", "model.width=9", "experiment=x", "seed=0"])]
    assert "  not started: x/2026-01-01/12-00-00: method=sat model.width=9 experiment=x seed=0" in \
        format_report(report).splitlines()


# --- double descent and figures -----------------------------------------------------------


def test_a_width_sweep_draws_a_series_per_group_in_paper_ready_files(tmp_path):
    for method in ("ce", "sat"):
        for rate in (0.2, 0.4):
            for width in (8, 16, 32):
                fits = width >= (16 if method == "ce" else 32)
                make_run(tmp_path, folder(method=method, **{"noise.rate": rate, "model.width": width}), method=method,
                         rate=rate, width=width, train_acc=[0.5, 0.8, 1.0 if fits else 0.8])
    report = make_report(tmp_path, tol=0.5)
    assert report.grouping.columns == ["method", "model.width", "noise.rate"]
    assert [(s.label, s.threshold) for s in report.series] == [
        ("method=ce, noise.rate=0.2", 16), ("method=ce, noise.rate=0.4", 16),
        ("method=sat, noise.rate=0.2", 32), ("method=sat, noise.rate=0.4", 32)]
    assert [p.width for p in report.series[0].points] == [8, 16, 32]
    for name in ("test_error_vs_width", "test_error_vs_epoch", "test_error_heatmap"):
        assert png_dpi(report.out / f"{name}.png") == pytest.approx(200, abs=0.1), name
        assert is_pdf(report.out / f"{name}.pdf"), name
    printed = format_report(report)
    assert "interpolation threshold (method=sat, noise.rate=0.4; train error <= 0.5%): model.width 32" in printed


def test_width_series_are_only_finished_runs(tmp_path):
    make_run(tmp_path, "a", width=8)
    make_run(tmp_path, "b", width=16, status="running")
    (series,) = width_series(group_runs(read_runs(tmp_path)))
    assert [p.width for p in series.points] == [8]


def test_interpolation_threshold_is_the_smallest_width_that_fits():
    def pt(width, train):
        return WidthPoint(width, None, np.array([10.0, 10.0]), np.array(train), [])

    points = [pt(8, [20, 20]), pt(32, [4, 0]), pt(64, [0, 0.5]), pt(128, [0, 0])]
    assert interpolation_threshold(points, 1.0) == 64
    assert interpolation_threshold(points, 5.0) == 32
    assert interpolation_threshold(points[:1], 1.0) is None


def test_the_report_is_written_where_asked(tmp_path, capsys):
    make_run(tmp_path / "runs", "a")
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "runs.csv").is_file() and not (tmp_path / "runs" / "report").exists()
    assert f"wrote {tmp_path / 'elsewhere'}/" in capsys.readouterr().out
    assert json.loads((tmp_path / "runs" / "a" / "summary.json").read_text())["status"] == "finished"
