"""The end-of-run table and ``summary.json``'s headline come from the method: its own
``hparams()`` (whatever their names) and the metrics it names (``headline()``)."""

from __future__ import annotations

import torch

from sat.methods.dividemix import DivideMix
from sat.methods.sat import SelfAdaptiveTraining
from sat.methods.ssl import SelfSupervisedSAT
from sat.tasks.train.outputs import headline, print_run_table


def _box(capsys, method, choice: str, final: dict, best: dict | None, rate: float = 0.4) -> str:
    print_run_table({"noise": {"kind": "uniform", "rate": rate, "realised_error": rate * 0.9}, "final": final,
                     "at_best_val": best, "output_dir": "/tmp/run", "epochs_done": 100, "choices": {"method": choice},
                     "method": method.hparams(), "headline": headline(method.headline(), final, best)})
    return capsys.readouterr().out


def test_the_box_shows_the_method_s_own_hyper_parameters(capsys):
    out = _box(capsys, DivideMix(lambda_u=150.0, p_threshold=0.6), "dividemix", {"test/acc": 0.9}, None)
    assert "dividemix: warmup_epochs 10, lambda_u 150.0, p_threshold 0.6" in out  # names no fixed list knows
    assert "final test acc              90.00% (epoch 100)" in out and "n/a (no validation split)" in out
    assert "label recovery" not in out  # no soft labels


def test_soft_labels_add_label_recovery_final_and_at_the_best_epoch(capsys):
    method = SelfAdaptiveTraining(start_epoch=10)
    method.setup(torch.zeros(4, dtype=torch.long), 3)
    final = {"test/acc": 0.95, "sat/label_recovery": 0.81}
    best = {"epoch": 60, "val/acc": 0.97, "test/acc": 0.96, "sat/label_recovery": 0.8}
    out = _box(capsys, method, "sat", final, best)
    assert "final label recovery" in out and "81.00% (epoch 100)" in out
    assert "label recovery at best val epoch  80.00% (epoch 60, val acc 97.00%)" in out
    assert "noise" in out and "36.0% wrong training labels" in out


def test_a_self_supervised_run_shows_its_knn_accuracy_and_no_label_noise(capsys):
    out = _box(capsys, SelfSupervisedSAT(), "ssl_sat", {"test/acc": 0.39, "test/knn_acc": 0.728},
               {"epoch": 95, "val/acc": 0.4, "test/acc": 0.38, "test/knn_acc": 0.7}, rate=0.0)
    assert "final kNN test acc" in out and "72.80% (epoch 100)" in out
    assert "kNN test acc at best val epoch" in out and "70.00% (epoch 95" in out
    assert "final test acc" not in out and "39.00%" not in out  # the online probe is a monitor, not the result
    assert "noise" not in out  # no label noise: no "uniform rate 0" line
    assert "probe_lr 0.1" in out and "start_epoch 10" in out
