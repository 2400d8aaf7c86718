"""The label-error report and a training run write one ``label_errors.csv`` schema;
the report prints a table, its JSON holds no NaN and lists every file it wrote, and it reaches the
run's ``evaluations/`` folder (through the real train.py and evaluate.py)."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from conftest import run_entry

import sat
from sat.label_errors.export import COLUMNS, write_label_errors


def test_the_csv_ranks_flagged_samples_by_suspicion(tmp_path):
    distribution = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.05, 0.95]])
    given = torch.tensor([0, 0, 0, 1])  # sample 1 and 2 disagree; 1 more strongly
    n = write_label_errors(tmp_path / "e.csv", distribution, given, torch.tensor([10, 11, 12, 13]),
                           files=["a.png", "b.png", "c.png", "d.png"])
    rows = list(csv.DictReader(open(tmp_path / "e.csv")))
    assert n == 2 and [r["sample_id"] for r in rows] == ["11", "12"]
    assert rows[0] == {"sample_id": "11", "given_label": "0", "suggested_label": "1", "confidence": "0.8000",
                       "suspicion": "0.8000", "true_label": "-1", "file": "b.png"}


@pytest.mark.e2e  # starts a process
def test_training_and_the_report_write_one_schema_and_the_report_is_complete(tmp_path):
    run = tmp_path / "run"
    sat.train(["experiment=quickstart", "trainer.epochs=12", "method.start_epoch=2", "device=cpu", "logger=none"],
              output_dir=run)  # in this process; the report is evaluate.py's
    out = tmp_path / "errors"
    proc = run_entry("evaluate.py", f"checkpoint={run}/checkpoints/last.pt", "report=label_errors", "report.top_suspects=4",
                     "device=cpu", f"hydra.run.dir={out}", cwd=tmp_path)
    lines = proc.stdout.splitlines()
    result = json.loads((out / "label_errors.json").read_text())  # strict JSON: NaN would fail
    assert "NaN" not in proc.stdout and "test/acc" not in result and "{" not in proc.stdout  # a table, not a dump
    assert str(out / "label_errors.json") in result["files"] and str(out / "label_errors.csv") in result["files"]
    assert all((out / name).is_file() for name in ("label_errors.json", "label_errors.csv", "refined_labels.pt"))
    (beside,) = (run / "evaluations").glob("last.label_errors*.json")
    assert json.loads(beside.read_text()) == result
    assert str(beside) in next(x for x in lines if x.startswith("results "))
    suspects = next(x for x in lines if x.startswith("suspects "))
    assert f"{result['flagged']} of {result['num_train']} training labels (by the soft targets)" in suspects
    printed = result
    headers = [next(csv.reader(open(folder / "label_errors.csv"))) for folder in (run, out)]
    assert headers == [list(COLUMNS), list(COLUMNS)]
    assert all((folder / "label_errors.html").is_file() for folder in (run, out))  # and each its review page
    report_rows = list(csv.DictReader(open(out / "label_errors.csv")))
    assert len(report_rows) == printed["flagged"] > 0
    # the run's soft targets are what the report reads from its last checkpoint: the same suspects
    assert [r["sample_id"] for r in report_rows] == [r["sample_id"] for r in csv.DictReader(open(run / "label_errors.csv"))]


def test_refined_labels_keep_the_validation_samples_wherever_the_holdout_took_them():
    """A folder dataset holds its validation samples out at seeded positions of the pool:
    the refined pattern puts each suggestion at its own sample and leaves those alone."""
    from sat.data.datasets import DatasetSplits
    from sat.data.noise import FlipLabelNoise
    from sat.data.prepare import prepare
    from sat.data.splits import ImageSet
    from sat.tasks.evaluate.label_errors import refined_labels

    n, classes = 40, 4
    pool = ImageSet(torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.arange(n) % classes, torch.arange(100, 100 + n))
    test = ImageSet(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.arange(4), torch.arange(4))
    for holdout_seed in (None, 3):  # the tail, or seeded positions
        data = DatasetSplits("toy", pool, test, classes, (0.0,), (1.0,), val_size=10, holdout_seed=holdout_seed)
        nd = prepare(data, FlipLabelNoise(rate=0.5, seed=0), "cpu")
        suggested = (nd.train.labels + 1) % classes  # every training sample gets another label
        refined = refined_labels(nd, suggested)
        by_id = dict(zip(pool.ids.tolist(), refined.labels.tolist()))
        assert [by_id[i] for i in nd.train.ids.tolist()] == suggested.tolist()
        assert [by_id[i] for i in nd.val.ids.tolist()] == nd.val.labels.tolist()  # the given (noisy) labels
        assert refined.num_samples == n and bool((refined.labels != pool.labels).any())
