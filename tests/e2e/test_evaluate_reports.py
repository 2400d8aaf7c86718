"""evaluate.py's other reports: selective classification over several checkpoints (through
the entry point, whose printed table is checked), and label errors with the refined labels a
later run trains on (through the Python API)."""

from __future__ import annotations

import csv
import json

import torch
from conftest import run_entry, user_error

import sat


def test_selective_report_compares_checkpoints_in_one_figure(tmp_path):
    runs = {}
    for method in ("sat_selective", "ce"):
        runs[method] = tmp_path / method
        sat.train(["experiment=selective_digits", f"method={method}", "trainer.epochs=6",
                   "method.pretrain=2" if method != "ce" else "trainer.batch_size=128", "device=cpu"],
                  output_dir=runs[method])
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


def test_label_error_report_and_training_on_the_refined_labels(quickstart_sweep, tmp_path, capsys):
    run = quickstart_sweep[0] / "method-sat+seed-0"  # the quickstart's SAT run
    out = tmp_path / "errors"
    sat.evaluate([f"checkpoint={run}/checkpoints/last.pt", "report=label_errors", "report.top_suspects=16", "device=cpu"],
                 output_dir=out)
    printed = capsys.readouterr().out.splitlines()  # a table to read, the JSON in its file
    assert not [line for line in printed if line.lstrip().startswith("{")]
    assert [line for line in printed if line.startswith("suspects ") and "training labels" in line]
    assert [line for line in printed if line.startswith("against the known wrong labels") and "AUROC" in line]
    result = json.loads((out / "label_errors.json").read_text())
    assert result["source"] == "soft targets"
    assert result["detection"]["precision"] > 0.8 and result["detection"]["auroc"] > 0.9
    rows = list(csv.DictReader(open(out / "label_errors.csv")))
    assert len(rows) == result["flagged"]
    assert [float(r["suspicion"]) for r in rows] == sorted((float(r["suspicion"]) for r in rows), reverse=True)
    assert all((out / f"label_error_suspects.{ext}").is_file() for ext in ("png", "pdf"))
    cleaner = sat.train(["experiment=quickstart", "method=ce", "trainer.epochs=2", "noise=refined",
                         f"noise.from_file={out}/refined_labels.pt", "device=cpu"], output_dir=tmp_path / "refined")["noise"]
    noisy = json.loads((run / "summary.json").read_text())["noise"]
    assert cleaner["kind"] == "refined" and cleaner["realised_error"] < noisy["realised_error"] / 3
    assert cleaner["source"]["rule"] == "every suggestion of the soft targets" and cleaner["removed"] == 0
    line = user_error(sat.train, ["dataset=synthetic", "model=cnn", "method=ce", "trainer.epochs=1", "noise=refined",
                                  f"noise.from_file={out}/refined_labels.pt", "device=cpu"], tmp_path / "other")
    assert line.startswith("noise")  # another training set: refused
