"""sat.report's self-supervised table and kNN-vs-epoch curves.

First on run folders that follow the run-folder contract (tests/run_folders.py), with
metrics.jsonl written by the framework's own writer (sat.run.loggers.RunLogger) and the
offline evaluations saved where evaluate.py saves them (save_next_to_run), every number
chosen so the table and the curves can be computed by hand; then on a tiny real sweep
(train.py -m experiment=ssl_digits, two methods, two seeds, 3 epochs) evaluated by
evaluate's report=knn|linear_probe (in process)."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
from conftest import run_entry
from run_folders import make_run

from sat.report import format_report, make_report
from sat.report.ssl import is_ssl, knn_curve
from sat.run.loggers import RunLogger
from sat.tasks.evaluate.base import save_next_to_run


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def ssl_run(root: Path, method: str, seed: int, knn: dict[int, float], probe: float | None = None,
            knn_offline: float | None = None, epochs: int = 4, projection_std: float = 0.8) -> Path:
    """A finished SSL run: ``knn`` {epoch: test/knn_acc} logged at those epochs (others
    log no kNN, as with eval_every), the offline evaluations of last.pt if given."""
    path = make_run(root, f"method-{method}+seed-{seed}", method="ce", seed=seed, epochs=epochs,
                    test_acc=[0.5] * epochs, overrides=[f"method={method}", f"seed={seed}"])
    hydra = path / ".hydra" / "hydra.yaml"  # the group option as Hydra records it
    hydra.write_text(hydra.read_text().replace("method: ce", f"method: {method}"))
    (path / "metrics.jsonl").unlink()
    history = []
    with RunLogger(path, epochs) as log:
        for epoch in range(1, epochs + 1):
            m = {"train/loss": 1.0, "train/acc": 0.5, "test/acc": 0.5, "train/ssl_loss": 0.3}
            if epoch in knn:
                m.update({"test/knn_acc": knn[epoch], "repr/projection_std": projection_std})
            log.log_epoch(epoch, m)
            history.append({"epoch": epoch, **m})
    summary = json.loads((path / "summary.json").read_text())
    summary.update({"final": history[-1], "at_best_val": None})
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "checkpoints").mkdir()
    last = path / "checkpoints" / "last.pt"
    if probe is not None:
        save_next_to_run(last, "linear_probe.json", {"report": "linear_probe", "epoch": epochs, "labels_per_class": 10,
                                                     "label_fraction": None, "test/acc": probe,
                                                     "random_init/test/acc": 0.80})
    if knn_offline is not None:
        save_next_to_run(last, "knn.json", {"report": "knn", "epoch": epochs, "labels_per_class": None,
                                            "label_fraction": None,
                                            "k": 200, "temperature": 0.1, "test/acc": knn_offline,
                                            "random_init/test/acc": 0.70})
    return path


def test_a_self_supervised_sweep_gets_no_noisy_label_comparison(tmp_path):
    """An SSL run's test accuracy is its online probe's: the method x noise table does not
    apply (nor, without a validation split, the best-validation column)."""
    for seed in (0, 1):
        ssl_run(tmp_path, "byol", seed, {2: 0.6, 4: 0.7})
    report = make_report(tmp_path)
    assert report.comparison is None
    assert not (report.out / "comparison.md").exists() and not (report.out / "comparison.csv").exists()
    assert (report.out / "ssl.md").is_file() and (report.out / "runs.csv") in report.files
    printed = format_report(report)
    assert "# Comparison" not in printed and "Final test accuracy" not in printed and "best val" not in printed
    assert "kNN" in printed
    # beside a run trained on labels, the comparison holds that run only
    make_run(tmp_path, "method-ce+seed-0", method="ce", seed=0, overrides=["method=ce", "seed=0"])
    report = make_report(tmp_path)
    rows = read_csv(report.out / "comparison.csv")
    assert [r["method"] for r in rows] == ["ce"], rows


def table_rows(md: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split(" | ") for line in md.splitlines() if line.startswith("| ")]
    return {r[0].strip(): [c.strip() for c in r] for r in rows}


def test_ssl_table_is_the_hand_computed_mean_and_std_of_runs_and_their_evaluations(tmp_path):
    # kNN logged at epochs 2 and 4; per seed (a - d, a, a + d) at the last one: mean a, sample std d
    cells = {"byol": (0.80, 0.02, 0.90, 0.01, 0.84, 0.03), "ssl_sat": (0.85, 0.01, 0.92, 0.02, 0.86, 0.00)}
    for method, (a, d, p, e, k, f) in cells.items():
        for i, seed in enumerate((0, 1, 2)):
            ssl_run(tmp_path, method, seed, {2: 0.5, 4: a + (i - 1) * d}, probe=p + (i - 1) * e,
                    knn_offline=k + (i - 1) * f)
    # a non-SSL run (no test/knn_acc) is not in the SSL table
    make_run(tmp_path, "method-ce+seed-0", method="ce", seed=0, overrides=["method=ce", "seed=0"])
    report = make_report(tmp_path)
    md = (report.out / "ssl.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| method"))
    assert header == ("| method | n | kNN, last evaluation in training (%) | kNN (all labels, k 200, T 0.1) (%) | "
                      "kNN (all labels, k 200, T 0.1), random init (%) | linear probe (10/class) (%) | "
                      "linear probe (10/class), random init (%) | projection std x sqrt(d) |")
    rows = table_rows(md)
    assert set(rows) == {"method", "byol", "ssl_sat"}  # no ce row
    assert rows["byol"][1:] == ["3", "80.0 ± 2.0", "84.0 ± 3.0", "70.0 ± 0.0", "90.0 ± 1.0", "80.0 ± 0.0",
                                "0.80 ± 0.00"]
    assert rows["ssl_sat"][1:] == ["3", "85.0 ± 1.0", "86.0 ± 0.0", "70.0 ± 0.0", "92.0 ± 2.0", "80.0 ± 0.0",
                                   "0.80 ± 0.00"]
    csv_rows = {r["method"]: r for r in read_csv(report.out / "ssl.csv")}
    for method, (a, d, p, e, k, _) in cells.items():
        r = csv_rows[method]
        assert r["seeds"] == "0 1 2" and r["linear_probe_10_per_class_pct_n"] == "3"
        assert float(r["knn_last_logged_pct_mean"]) == pytest.approx(100 * a, abs=1e-3)
        assert float(r["knn_last_logged_pct_std"]) == pytest.approx(100 * d, abs=1e-3)
        assert float(r["linear_probe_10_per_class_pct_mean"]) == pytest.approx(100 * p, abs=1e-3)
        assert float(r["linear_probe_10_per_class_pct_std"]) == pytest.approx(100 * e, abs=1e-3)
        assert float(r["knn_all_labels_k200_T0.1_pct_mean"]) == pytest.approx(100 * k, abs=1e-3)
    # the curves: epochs 2 and 4 only (the epochs that logged kNN), mean and sample std over seeds
    curves = {(r["group"], int(r["epoch"])): r for r in read_csv(report.out / "knn_vs_epoch.csv")}
    assert sorted(curves) == [("method=byol", 2), ("method=byol", 4), ("method=ssl_sat", 2), ("method=ssl_sat", 4)]
    for method, (a, d, *_) in cells.items():
        early, last = curves[(f"method={method}", 2)], curves[(f"method={method}", 4)]
        assert float(early["knn_acc_pct_mean"]) == pytest.approx(50.0) and float(early["knn_acc_pct_std"]) == 0.0
        assert float(last["knn_acc_pct_mean"]) == pytest.approx(100 * a, abs=1e-3)
        assert float(last["knn_acc_pct_std"]) == pytest.approx(100 * d, abs=1e-3) and last["knn_acc_pct_n"] == "3"
    for suffix in (".png", ".pdf"):
        assert (report.out / f"knn_vs_epoch{suffix}").stat().st_size > 1000
    assert md.split("\n\n", 2)[2].strip() in format_report(report)  # printed too


def test_the_newest_evaluation_counts_and_runs_without_one_are_left_out_of_its_column(tmp_path):
    ssl_run(tmp_path, "simclr", 0, {3: 0.6}, epochs=3, probe=0.50)
    ssl_run(tmp_path, "simclr", 1, {3: 0.7}, epochs=3)  # not evaluated offline
    first = tmp_path / "method-simclr+seed-0"
    save_next_to_run(first / "checkpoints" / "last.pt", "linear_probe.json",  # evaluated again: last.linear_probe.2.json
                     {"report": "linear_probe", "epoch": 3, "labels_per_class": 10, "test/acc": 0.60,
                      "random_init/test/acc": 0.8})
    # an evaluation of another checkpoint (best.pt) is not the final weights'
    save_next_to_run(first / "checkpoints" / "best.pt", "linear_probe.json",
                     {"report": "linear_probe", "epoch": 3, "labels_per_class": 10, "test/acc": 0.99,
                      "random_init/test/acc": 0.8})
    import os
    newest = first / "evaluations" / "last.linear_probe.2.json"
    os.utime(newest, (newest.stat().st_mtime + 10,) * 2)
    report = make_report(tmp_path)
    (row,) = read_csv(report.out / "ssl.csv")
    assert row["linear_probe_10_per_class_pct_mean"] == "60.0" and row["linear_probe_10_per_class_pct_n"] == "1"
    assert float(row["knn_last_logged_pct_mean"]) == pytest.approx(65.0) and row["knn_last_logged_pct_n"] == "2"
    assert "| all | 2 | 65.0 ± 7.1 | 60.0 | 80.0 |" in (report.out / "ssl.md").read_text()


def test_an_evaluation_of_an_earlier_epoch_is_never_shown_as_the_final_weights(tmp_path):
    """Issue 27, item 5: last.pt evaluated at epoch 2 of a run that finished at epoch 8."""
    run = ssl_run(tmp_path, "byol", 0, {8: 0.692}, epochs=8, knn_offline=0.70)
    save_next_to_run(run / "checkpoints" / "last.pt", "knn.json", {  # evaluated while training: epoch 2
        "report": "knn", "epoch": 2, "k": 200, "temperature": 0.1, "test/acc": 0.638, "random_init/test/acc": 0.5})
    newest = run / "evaluations" / "last.knn.2.json"
    import os
    os.utime(newest, (newest.stat().st_mtime + 10,) * 2)  # the newest file, yet not the final weights'
    report = make_report(tmp_path)
    (row,) = read_csv(report.out / "ssl.csv")
    assert row["knn_all_labels_k200_T0.1_pct_mean"] == "70.0"  # the epoch-8 evaluation, not 63.8
    skipped = ("Skipped method-byol+seed-0/evaluations/last.knn.2.json: of epoch 2, the run's final weights are of "
               "epoch 8: left out (evaluate its last.pt again)")
    assert skipped in (report.out / "ssl.md").read_text().splitlines() and skipped in format_report(report)


def test_a_folder_without_ssl_runs_writes_no_ssl_table(tmp_path):
    make_run(tmp_path, "method-ce+seed-0", method="ce", seed=0)
    report = make_report(tmp_path)
    assert report.ssl is None and not (report.out / "ssl.md").exists()
    assert "Self-supervised" not in format_report(report)


@pytest.mark.e2e  # starts a process
def test_a_real_ssl_sweep_and_its_evaluations_make_the_table_and_curves(tmp_path, compose_cfg):
    from sat.tasks.evaluate import run as evaluate

    root = tmp_path / "sweep"
    run_entry("train.py", "-m", "experiment=ssl_digits", "method=byol,simclr", "seed=0,1", "trainer.epochs=3",
              "trainer.eval_every=2", "model.width=4", "trainer.batch_size=128",
              "device=cpu", "logger=none", "hydra/launcher=basic", f"hydra.sweep.dir={root}", cwd=tmp_path)
    runs = sorted(root.glob("method-*+seed-*"))
    assert len(runs) == 4
    for run in runs:
        for report in ("knn", "linear_probe"):
            evaluate(compose_cfg("evaluate", [f"report={report}", "report.labels_per_class=5", "device=cpu",
                                              f"checkpoint={run / 'checkpoints/last.pt'}",
                                              f"paths.output_dir={tmp_path / 'eval' / run.name / report}"]))
    report = make_report(root)
    assert {is_ssl(r) for r in report.runs} == {True}
    rows = {r["method"]: r for r in read_csv(report.out / "ssl.csv")}
    assert set(rows) == {"byol", "simclr"}
    for method in ("byol", "simclr"):
        folders = [next(root.glob(f"method-{method}+*+seed-{s}")) for s in (0, 1)]
        logs = [[json.loads(line) for line in (f / "metrics.jsonl").read_text().splitlines()] for f in folders]
        assert [[m["epoch"] for m in log if "test/knn_acc" in m] for log in logs] == [[2, 3], [2, 3]]
        for key, values in (
            ("knn_last_logged_pct", [100 * log[-1]["test/knn_acc"] for log in logs]),
            ("linear_probe_5_per_class_pct",
             [100 * json.loads((f / "evaluations/last.linear_probe.json").read_text())["test/acc"] for f in folders]),
            ("knn_5_per_class_k200_T0.1_pct",
             [100 * json.loads((f / "evaluations/last.knn.json").read_text())["test/acc"] for f in folders]),
            ("knn_5_per_class_k200_T0.1_random_init_pct",
             [100 * json.loads((f / "evaluations/last.knn.json").read_text())["random_init/test/acc"] for f in folders]),
        ):
            assert float(rows[method][f"{key}_mean"]) == pytest.approx(statistics.mean(values), abs=1e-3), key
            assert float(rows[method][f"{key}_std"]) == pytest.approx(statistics.stdev(values), abs=1e-3), key
        curve = knn_curve(method, [r for r in report.runs if r.choices["method"] == method])
        assert curve.epochs.tolist() == [2, 3]
        assert curve.mean.tolist() == pytest.approx([statistics.mean(100 * log[i]["test/knn_acc"] for log in logs)
                                                     for i in (1, 2)])
    assert (report.out / "knn_vs_epoch.png").is_file() and (report.out / "knn_vs_epoch.pdf").is_file()
