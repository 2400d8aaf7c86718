"""evaluate.py's other reports through the real entry points: selective classification
over several checkpoints, and label errors with the refined labels a later run trains on."""

from __future__ import annotations

import csv
import json

import torch

from conftest import run_entry


def test_selective_report_compares_checkpoints_in_one_figure(tmp_path):
    runs = {}
    for method in ("sat_selective", "ce"):
        runs[method] = tmp_path / method
        run_entry("train.py", "experiment=selective_digits", f"method={method}", "trainer.epochs=6",
                  "method.pretrain=2" if method != "ce" else "trainer.batch_size=128", "device=cpu",
                  f"hydra.run.dir={runs[method]}", cwd=tmp_path)
    assert torch.load(runs["sat_selective"] / "checkpoints/last.pt", weights_only=True)["model_outputs"] == 11
    out = tmp_path / "eval"
    ckpts = ",".join(str(runs[m] / "checkpoints/last.pt") for m in ("sat_selective", "ce"))
    proc = run_entry("evaluate.py", "report=selective", f"checkpoint=[{ckpts}]", "device=cpu", f"hydra.run.dir={out}",
                     cwd=tmp_path)
    rows = list(csv.DictReader(open(out / "selective.csv")))
    assert len(rows) == 2 * 16 and {r["score"] for r in rows} == {"abstain", "max_softmax"}
    assert all((out / f"risk_coverage.{ext}").is_file() for ext in ("png", "pdf"))
    result = json.loads((out / "selective.json").read_text())
    for r in result["results"]:  # realised coverage near the target (thresholds from the 200 validation images)
        assert r["coverage"]["100"] == 1.0 and abs(r["coverage"]["50"] - 0.5) < 0.1
        assert r["selective_error"]["50"] <= r["selective_error"]["100"]
        assert r["calibration"] == "separate set"
    assert "AURC" in proc.stdout


def test_label_error_report_and_training_on_the_refined_labels(tmp_path):
    run = tmp_path / "sat"
    run_entry("train.py", "experiment=quickstart", "trainer.epochs=30", "method.start_epoch=5", "device=cpu",
              f"hydra.run.dir={run}", cwd=tmp_path)
    out = tmp_path / "errors"
    run_entry("evaluate.py", f"checkpoint={run}/checkpoints/last.pt", "report=label_errors", "top_suspects=16",
              "device=cpu", f"hydra.run.dir={out}", cwd=tmp_path)
    result = json.loads((out / "label_errors.json").read_text())
    assert result["source"] == "soft targets"
    assert result["detection"]["precision"] > 0.8 and result["detection"]["auroc"] > 0.9
    rows = list(csv.DictReader(open(out / "label_errors.csv")))
    assert len(rows) == result["flagged"]
    assert [float(r["suspicion"]) for r in rows] == sorted((float(r["suspicion"]) for r in rows), reverse=True)
    assert all((out / f"label_error_suspects.{ext}").is_file() for ext in ("png", "pdf"))
    refined = tmp_path / "refined"
    run_entry("train.py", "experiment=quickstart", "method=ce", "trainer.epochs=2", "noise=refined",
              f"noise.from_file={out}/refined_labels.pt", "device=cpu", f"hydra.run.dir={refined}", cwd=tmp_path)
    noisy = json.loads((run / "summary.json").read_text())["noise"]
    cleaner = json.loads((refined / "summary.json").read_text())["noise"]
    assert cleaner["kind"] == "refined" and cleaner["realised_error"] < noisy["realised_error"] / 3
    digits = run_entry("train.py", "dataset=synthetic", "model=cnn", "method=ce", "trainer.epochs=1", "noise=refined",
                       f"noise.from_file={out}/refined_labels.pt", "device=cpu", f"hydra.run.dir={tmp_path / 'other'}",
                       cwd=tmp_path, check=False)
    assert digits.returncode == 2 and "error: noise" in digits.stderr  # another training set: refused
