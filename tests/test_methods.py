"""SAT and SAT+SCE losses against hand computation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sat.errors import UserError
from sat.methods import CrossEntropy, SelfAdaptiveTraining, SelfAdaptiveTrainingSCE, scale_for_width

LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
LABELS = torch.tensor([0, 2])
INDEX = torch.tensor([3, 1])


def make(cls=SelfAdaptiveTraining, **kw):
    m = cls(alpha=0.8, start_epoch=2, **kw)
    m.setup(torch.tensor([1, 2, 0, 0]), num_classes=3)  # four training samples
    return m


def softmax(row):
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def test_targets_start_one_hot_of_the_given_labels():
    m = make()
    assert m.soft_labels().tolist() == [[0, 1, 0], [0, 0, 1], [1, 0, 0], [1, 0, 0]]


def test_cross_entropy_before_start_epoch_and_targets_untouched():
    m = make()
    loss = m.loss(LOGITS, LABELS, INDEX, epoch=1)
    assert torch.allclose(loss, F.cross_entropy(LOGITS, LABELS))
    assert m.soft_labels()[3].tolist() == [1, 0, 0]


def test_sat_loss_matches_hand_computation():
    m = make()
    loss = m.loss(LOGITS, LABELS, INDEX, epoch=2)
    # by hand: t = 0.8 * old + 0.2 * softmax, w = max t normalised to sum to the batch size
    old = [[1, 0, 0], [0, 0, 1]]  # samples 3 and 1
    t = [[0.8 * o + 0.2 * p for o, p in zip(old[i], softmax(LOGITS[i].tolist()))] for i in range(2)]
    w = [max(r) for r in t]
    w = [v * 2 / sum(w) for v in w]
    logp = [[math.log(p) for p in softmax(LOGITS[i].tolist())] for i in range(2)]
    per = [-sum(t[i][k] * logp[i][k] for k in range(3)) for i in range(2)]
    expected = sum(w[i] * per[i] for i in range(2)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert m.soft_labels()[3].tolist() == pytest.approx(t[0], rel=1e-6)
    assert m.soft_labels()[1].tolist() == pytest.approx(t[1], rel=1e-6)
    assert m.soft_labels()[0].tolist() == [0, 1, 0]  # not in the batch: unchanged


def test_sat_target_update_is_detached_but_loss_has_gradient():
    m = make()
    logits = LOGITS.clone().requires_grad_(True)
    m.loss(logits, LABELS, INDEX, epoch=5).backward()
    assert logits.grad is not None and not m.soft_labels().requires_grad


def test_sat_sce_matches_hand_computation():
    m = make(SelfAdaptiveTrainingSCE, ce_weight=1.0, rce_weight=0.3)
    loss = m.loss(LOGITS, LABELS, INDEX, epoch=2)
    old = [[1, 0, 0], [0, 0, 1]]
    p = [softmax(LOGITS[i].tolist()) for i in range(2)]
    t = [[0.8 * o + 0.2 * q for o, q in zip(old[i], p[i])] for i in range(2)]
    w = [max(r) for r in t]
    w = [v * 2 / sum(w) for v in w]
    ce = [-sum(t[i][k] * math.log(p[i][k]) for k in range(3)) for i in range(2)]
    rce = [-sum(max(p[i][k], 1e-7) * math.log(max(t[i][k], 1e-4)) for k in range(3)) for i in range(2)]
    expected = sum(w[i] * (ce[i] + 0.3 * rce[i]) for i in range(2)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_sce_clamps_log_of_zero_targets():
    m = SelfAdaptiveTrainingSCE(alpha=0.0, start_epoch=0)
    m.setup(torch.tensor([0]), 3)
    huge = torch.tensor([[100.0, -100.0, -100.0]])  # softmax is exactly one-hot in float32
    assert torch.isfinite(m.loss(huge, torch.tensor([0]), torch.tensor([0]), epoch=0))


def test_width_scaling_formula():
    assert scale_for_width(0.9, 40, 64) == (0.9, 40)
    alpha, es = scale_for_width(0.9, 40, 16)
    assert alpha == pytest.approx(0.9 ** 0.25) and es == 160
    m = SelfAdaptiveTraining(alpha=0.9, start_epoch=40, width_scaling=True, width=8)
    assert m.alpha == pytest.approx(0.9 ** (8 / 64)) and m.start_epoch == 320
    assert m.hparams()["base_alpha"] == 0.9 and m.hparams()["width_scaling"] is True
    assert SelfAdaptiveTraining(alpha=0.9, start_epoch=40, width=8).alpha == 0.9  # off by default


@pytest.mark.parametrize("kwargs,bad", [({"alpha": 1.0}, "alpha=1.0"), ({"start_epoch": -1}, "start_epoch=-1")])
def test_bad_hyper_parameters_name_the_value(kwargs, bad):
    with pytest.raises(UserError, match=bad):
        SelfAdaptiveTraining(**kwargs)


def test_soft_targets_round_trip_through_state_dict():
    m = make()
    m.loss(LOGITS, LABELS, INDEX, epoch=3)
    fresh = make()
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh.soft_labels(), m.soft_labels())


def test_cross_entropy_method():
    loss, logits = CrossEntropy()(lambda x: x, LOGITS, LABELS, INDEX, 0)
    assert torch.allclose(loss, F.cross_entropy(LOGITS, LABELS)) and logits is LOGITS


def test_label_error_detection_metrics_by_hand():
    from sat.tasks.training import _label_error_metrics

    given = torch.tensor([0, 1, 2, 0])
    true = torch.tensor([0, 2, 2, 1])  # samples 1 and 3 carry wrong labels
    soft = F.one_hot(torch.tensor([0, 2, 1, 0]), 3).float()  # flags 1 (right, recovered) and 2 (a false alarm)
    m = _label_error_metrics(soft, given, true, given != true)
    assert m == {"sat/label_recovery": 0.5, "sat/detection_precision": 0.5, "sat/detection_recall": 0.5}
