"""Behaviour with fixed seeds: the abstention methods train, and the abstain score ranks
the errors. A minimal loop of their own (model with K + 1 outputs, method forward,
SGD), since train.py's wiring of ``extra_outputs`` is not part of these modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sat.data.datasets import Digits
from sat.methods.selective import DeepGamblers, SelfAdaptiveSelective
from sat.models import SmallCNN, with_normalization
from sat.selective import confidence_scores, evaluate_selective, risk_at_coverage


def blobs(n: int, num_classes: int, spread: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits-sized (1x8x8) images in [0, 1]: one random template per class plus noise."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(num_classes, 1, 8, 8, generator=torch.Generator().manual_seed(1234))
    y = torch.randint(num_classes, (n,), generator=g)
    return (templates[y] + spread * torch.randn(n, 1, 8, 8, generator=g)).clamp(0, 1), y


def flip_labels(y: torch.Tensor, num_classes: int, rate: float, seed: int) -> torch.Tensor:
    """A ``rate`` fraction of the labels moved to another class."""
    g = torch.Generator().manual_seed(seed)
    flipped = y.clone()
    idx = torch.randperm(len(y), generator=g)[: int(rate * len(y))]
    flipped[idx] = (y[idx] + torch.randint(1, num_classes, (len(idx),), generator=g)) % num_classes
    return flipped


def train(method, model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, epochs: int,
          lr: float = 0.05, batch: int = 64, seed: int = 0) -> list[float]:
    """SGD epochs of ``method`` on ``(x, y)``; returns each epoch's mean loss."""
    method.setup(y, num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for epoch in range(epochs):
        model.train()
        order, total = torch.randperm(len(y), generator=g), 0.0
        for start in range(0, len(y), batch):
            index = order[start : start + batch]
            loss, _ = method(model, x[index], y[index], index, epoch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(index)
        losses.append(total / len(y))
    return losses


@torch.no_grad()
def scores_and_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int):
    model.eval()
    scores, pred = confidence_scores(model(x), num_classes)
    return scores, pred == y


@pytest.mark.parametrize("method", [SelfAdaptiveSelective(momentum=0.9, pretrain=0), DeepGamblers(reward=2.2)])
def test_a_few_epochs_reduce_the_abstention_loss(method):
    torch.manual_seed(0)
    x, y = blobs(256, 10, spread=0.3, seed=0)
    model = SmallCNN(10 + method.extra_outputs, (1, 8, 8), width=4)
    losses = train(method, model, x, y, 10, epochs=8)
    assert losses[-1] < 0.8 * losses[0], losses


def test_abstain_score_ranks_flipped_labels_last():
    """SAT-selective on separable data with 20% flipped labels: judged against the given
    labels, the flipped samples are the errors. Their targets move to "abstain" and the
    net memorises that, so the abstain score rejects them first: the selective error at
    50% coverage falls well below the one at 100%."""
    torch.manual_seed(0)
    k = 4
    x, clean = blobs(400, k, spread=0.15, seed=1)
    given = flip_labels(clean, k, rate=0.2, seed=2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, k + 1))
    train(SelfAdaptiveSelective(momentum=0.9, pretrain=10), model, x, given, k, epochs=40, lr=0.1)
    scores, correct = scores_and_correct(model, x, given, k)
    full, half = risk_at_coverage(scores, correct, 1.0), risk_at_coverage(scores, correct, 0.5)
    assert full == pytest.approx(0.2, abs=0.02)  # the net predicts the clean class: the flips are its errors
    assert half < 0.6 * full, (full, half)
    flipped = given != clean
    assert scores[flipped].mean() < scores[~flipped].mean()


@pytest.mark.parametrize(
    "method", [SelfAdaptiveSelective(momentum=0.9, pretrain=10), DeepGamblers(reward=2.2, pretrain=10)]
)
def test_on_digits_selective_error_at_half_coverage_is_below_full(method):
    """The selective_digits setting, shortened: thresholds from the 200 held-out training
    images, errors on the 497 test images."""
    torch.manual_seed(0)
    data = Digits().load()
    train_set, val = data.train.tail(data.val_size)
    as_float = lambda images: images.float() / 255  # noqa: E731
    model = with_normalization(SmallCNN(10 + method.extra_outputs, (1, 8, 8), width=4), data.mean, data.std)
    train(method, model, as_float(train_set.images), train_set.labels, 10, epochs=20, batch=128)
    result = evaluate_selective(
        type(method).__name__,
        scores_and_correct(model, as_float(val.images), val.labels, 10),
        scores_and_correct(model, as_float(data.test.images), data.test.labels, 10),
        coverages_pct=[100, 50],
    )
    full, half = result.points
    assert full.selective_error > 0.01  # errors left to rank
    assert half.selective_error < full.selective_error / 2, (full, half)
    assert abs(half.coverage - 0.5) < 0.1  # the calibrated threshold carries over to the test set
