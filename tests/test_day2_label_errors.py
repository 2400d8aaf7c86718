"""The label-error report and a training run write one ``label_errors.csv`` schema;
the report's printed JSON holds no NaN, lists every file it wrote, and reaches the
run's ``evaluations/`` folder (through the real train.py and evaluate.py)."""

from __future__ import annotations

import csv
import json

import torch

from conftest import run_entry
from sat.label_errors import COLUMNS, write_label_errors


def test_the_csv_ranks_flagged_samples_by_suspicion(tmp_path):
    distribution = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.05, 0.95]])
    given = torch.tensor([0, 0, 0, 1])  # sample 1 and 2 disagree; 1 more strongly
    n = write_label_errors(tmp_path / "e.csv", distribution, given, torch.tensor([10, 11, 12, 13]),
                           files=["a.png", "b.png", "c.png", "d.png"])
    rows = list(csv.DictReader(open(tmp_path / "e.csv")))
    assert n == 2 and [r["sample_id"] for r in rows] == ["11", "12"]
    assert rows[0] == {"sample_id": "11", "given_label": "0", "suggested_label": "1", "confidence": "0.8000",
                       "suspicion": "0.8000", "true_label": "-1", "file": "b.png"}


def test_training_and_the_report_write_one_schema_and_the_report_is_complete(tmp_path):
    run = tmp_path / "run"
    run_entry("train.py", "experiment=quickstart", "trainer.epochs=12", "method.start_epoch=2", "device=cpu",
              "logger=none", f"hydra.run.dir={run}", cwd=tmp_path)
    out = tmp_path / "errors"
    proc = run_entry("evaluate.py", f"checkpoint={run}/checkpoints/last.pt", "report=label_errors", "top_suspects=4",
                     "device=cpu", f"hydra.run.dir={out}", cwd=tmp_path)
    lines = proc.stdout.splitlines()
    printed = json.loads("\n".join(lines[lines.index("{"):lines.index("}") + 1]))  # strict JSON: NaN would fail
    assert "NaN" not in proc.stdout and "test/acc" not in printed
    assert str(out / "label_errors.json") in printed["files"] and str(out / "label_errors.csv") in printed["files"]
    assert all((out / name).is_file() for name in ("label_errors.json", "label_errors.csv", "refined_labels.pt"))
    (beside,) = (run / "evaluations").glob("last.label_errors*.json")
    assert json.loads(beside.read_text()) == json.loads((out / "label_errors.json").read_text())
    assert str(beside) in next(x for x in lines if x.startswith("results: "))
    headers = [next(csv.reader(open(folder / "label_errors.csv"))) for folder in (run, out)]
    assert headers == [list(COLUMNS), list(COLUMNS)]
    report_rows = list(csv.DictReader(open(out / "label_errors.csv")))
    assert len(report_rows) == printed["flagged"] > 0
    # the run's soft targets are what the report reads from its last checkpoint: the same suspects
    assert [r["sample_id"] for r in report_rows] == [r["sample_id"] for r in csv.DictReader(open(run / "label_errors.csv"))]
