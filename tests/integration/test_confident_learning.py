"""Confident learning: K-fold probabilities are out-of-sample (checked against what each
fold's model actually trained on), cleanlab finds known flips on digits, bad values."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from sat.errors import UserError
from sat.label_errors.detection import confident_learning, detection_quality
from sat.methods import CrossEntropy
from sat.tasks.evaluate.cross_val import fold_split, optimizer_builder, out_of_sample_probabilities
from sat.tasks.evaluate.label_detectors import format_table
from sat.tasks.evaluate.label_errors import LabelErrorReport


class Recording(CrossEntropy):
    """CE that remembers which images (identified by their first pixel) it trained on."""

    def __init__(self):
        super().__init__()
        self.seen: set[int] = set()

    def forward(self, model, x, y, index, epoch):
        self.seen.update(torch.round(x[:, 0, 0, 0] * 255).long().tolist())
        return super().forward(model, x, y, index, epoch)


def linear(pixels: int, classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(pixels, classes))


def test_each_sample_is_predicted_by_the_model_that_never_trained_on_it():
    n = 60
    images = torch.randint(0, 255, (n, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)  # each image's identity
    labels = torch.arange(n) % 3
    methods: list[Recording] = []

    def build_method():
        methods.append(Recording())
        return methods[-1]

    result = out_of_sample_probabilities(
        images, labels, 3, folds=3, seed=0, build_model=lambda: linear(16, 3), build_method=build_method,
        build_optimizer=lambda p: torch.optim.SGD(p, lr=0.1), epochs=2, batch_size=16)
    assert len(methods) == 3
    assert torch.allclose(result.probs.sum(1), torch.ones(n, dtype=torch.float64))
    assert sorted(torch.bincount(result.fold).tolist()) == [20, 20, 20]
    everyone = set(range(n))
    for k, method in enumerate(methods):
        held_out = set(torch.nonzero(result.fold == k).flatten().tolist())
        assert method.seen == everyone - held_out  # trained on exactly the other folds
    # stratified: each held-out fold has every class
    assert all(len(set(labels[result.fold == k].tolist())) == 3 for k in range(3))


def test_cleanlab_finds_known_flips_on_digits():
    digits = load_digits()
    g = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(digits.target), generator=g)[:600]
    images = torch.as_tensor(digits.images[pick.numpy()] * 255 / 16, dtype=torch.float32).round().to(torch.uint8)
    images = images.unsqueeze(1)
    true = torch.as_tensor(digits.target[pick.numpy()])
    given = true.clone()
    flipped = torch.randperm(600, generator=g)[:60]
    given[flipped] = (true[flipped] + torch.randint(1, 10, (60,), generator=g)) % 10  # a different class
    wrong = given != true
    result = out_of_sample_probabilities(
        images, given, 10, folds=4, seed=0, build_model=lambda: linear(64, 10), build_method=CrossEntropy,
        build_optimizer=lambda p: torch.optim.Adam(p, lr=0.01), epochs=15, batch_size=64)
    scores, flagged = confident_learning(given, result.probs)
    quality = detection_quality(scores, wrong, flagged)
    assert quality["precision"] > 0.6 and quality["recall"] > 0.6 and quality["auroc"] > 0.9, quality
    assert "confident learning" in format_table({"confident learning": quality})


def test_bad_values_are_one_line_errors():
    with pytest.raises(UserError, match=r"detector='cleanlabs' is not supported; accepted: model, confident_learning"):
        LabelErrorReport(detector="cleanlabs")
    with pytest.raises(UserError, match="cannot be rebuilt"):
        optimizer_builder({"_target_": "os.system", "command": "true"})
    with pytest.raises(UserError, match="not a plain value"):
        optimizer_builder({"_target_": "torch.optim.SGD", "lr": {"_target_": "os.getcwd"}})
    with pytest.raises(UserError, match="folds=5 but a class has only 3"):
        fold_split(torch.tensor([0, 0, 0, 1, 1, 1, 1, 1]), 5, 0)


def test_label_error_report_puts_every_detector_in_one_table(compose_cfg, tmp_path, capsys):
    """In-process: a short quickstart SAT run, then evaluate's report with confident learning."""
    import json

    from sat.tasks.evaluate import run as evaluate
    from sat.tasks.train import run as train

    run = tmp_path / "run"
    train(compose_cfg("train", ["experiment=quickstart", "trainer.epochs=3", "method.start_epoch=1", "model.width=8",
                                "device=cpu", "logger=none", f"paths.output_dir={run}"]))
    out = tmp_path / "eval"
    evaluate(compose_cfg("evaluate", [f"checkpoint={run}/checkpoints/last.pt", "report=label_errors",
                                      "report.detector=confident_learning", "report.folds=2", "report.cv_epochs=2",
                                      "report.top_suspects=4",
                                      "device=cpu", f"paths.output_dir={out}"]))
    detectors = json.loads((out / "label_errors.json").read_text())["detectors"]
    assert list(detectors) == ["soft targets", "model probabilities", "confident learning"]
    assert all(0 <= d["precision"] <= 1 and 0.5 < d["auroc"] <= 1 for d in detectors.values()), detectors
    assert "confident learning" in capsys.readouterr().out
    # the review page carries confident learning's own score and flag for its cards, and its quality in the header
    html = (out / "label_errors.html").read_text()
    page = json.loads(html.split('type="application/json">')[1].split("</script>")[0])
    cards = len((out / "label_errors.csv").read_text().splitlines()) - 1
    assert len(page["scores"]["CL score"]) == len(page["scores"]["CL flags"]) == len(page["rows"]["sample_id"]) == cards
    assert list(page["summary"]["quality"]) == ["soft targets", "model probabilities", "confident learning"]
    with pytest.raises(UserError, match="report.detector='x' is not supported"):
        evaluate(compose_cfg("evaluate", [f"checkpoint={run}/checkpoints/last.pt", "report=label_errors", "report.detector=x",
                                          "device=cpu", f"paths.output_dir={tmp_path / 'bad'}"]))
