"""SAT and SAT+SCE losses against hand computation."""

from __future__ import annotations

import math
import re

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
    rce = [-sum(p[i][k] * math.log(t[i][k]) for k in range(3)) for i in range(2)]
    expected = sum(w[i] * (ce[i] + 0.3 * rce[i]) for i in range(2)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def _sce_reference(logit_steps: list[torch.Tensor], labels: list[int], alpha: float, a: float, b: float):
    """The reference's SelfAdaptiveTrainingSCE, step by step in float64 from its formula
    (no clamp): t <- alpha t + (1 - alpha) p; w = max t normalised to sum to the batch
    size; loss = mean w * (-a sum t log p - b sum p log t). Returns the last step's loss
    and its gradient w.r.t. the logits, plus the loss the old clamped code gave."""
    t = F.one_hot(torch.tensor(labels), 3).double()
    for step, logits in enumerate(logit_steps):
        z = logits.double().clone().requires_grad_(step == len(logit_steps) - 1)
        p = torch.exp(z) / torch.exp(z).sum(1, keepdim=True)
        t = alpha * t + (1 - alpha) * p.detach()
    w = t.max(1).values
    w = w * len(labels) / w.sum()
    per = -a * (t * torch.log(p)).sum(1) - b * (p * torch.log(t)).sum(1)
    loss = (w * per).mean()
    (grad,) = torch.autograd.grad(loss, [z])
    clamped = -a * (t * torch.log(p)).sum(1) - b * (p.clamp(min=1e-7) * torch.log(t.clamp(min=1e-4))).sum(1)
    return loss.item(), grad, (w * clamped).mean().item(), t


def test_sat_sce_equals_the_reference_formula_over_many_steps():
    """15 steps in which class 2 gets almost no probability, so its soft target falls
    far below 1e-4, then a step that gives it some: no clamp may change the result."""
    g = torch.Generator().manual_seed(0)
    steps = [torch.randn(2, 3, generator=g) + torch.tensor([4.0, 0.0, -14.0]) for _ in range(14)]
    steps.append(torch.tensor([[2.0, 0.5, -5.5], [1.0, 2.0, -6.0]]))
    m = SelfAdaptiveTrainingSCE(alpha=0.9, start_epoch=0, ce_weight=1.0, rce_weight=0.3)
    m.setup(torch.tensor([0, 1]), 3)
    index = torch.tensor([0, 1])
    for logits in steps[:-1]:
        m.loss(logits, torch.tensor([0, 1]), index, epoch=0)
    last = steps[-1].clone().requires_grad_(True)
    loss = m.loss(last, torch.tensor([0, 1]), index, epoch=0)
    loss.backward()
    expected, grad, clamped, t = _sce_reference(steps, [0, 1], 0.9, 1.0, 0.3)
    assert float(t[:, 2].max()) < 1e-4  # the case the old clamp changed
    assert loss.item() == pytest.approx(expected, rel=2e-6)
    assert torch.allclose(last.grad.double(), grad, atol=1e-6)
    assert abs(clamped - expected) > 20 * 2e-6 * abs(expected)  # a clamp would fail this test


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
    from sat.tasks.train.outputs import label_error_metrics

    given = torch.tensor([0, 1, 2, 0])
    true = torch.tensor([0, 2, 2, 1])  # samples 1 and 3 carry wrong labels
    soft = F.one_hot(torch.tensor([0, 2, 1, 0]), 3).float()  # flags 1 (right, recovered) and 2 (a false alarm)
    m = label_error_metrics(soft, given, true, given != true)
    # scores 1 - t[given] = [0, 1, 1, 0]: wrong {1: 1, 3: 0} vs right {0: 0, 2: 1} -> AUROC (1 + .5 + .5 + 0) / 4
    assert m == {"sat/target_on_given": 0.5, "sat/label_recovery": 0.5, "detect/targets_precision": 0.5,
                 "detect/targets_recall": 0.5, "detect/targets_f1": 0.5, "detect/targets_auroc": 0.5}


def test_start_epoch_beyond_the_run_is_refused():
    m = SelfAdaptiveTraining(alpha=0.9, start_epoch=60)
    with pytest.raises(UserError, match=r"^start_epoch=60 >= trainer.epochs=50, so SAT would never start"):
        m.plan(50)
    SelfAdaptiveTraining(alpha=0.9, start_epoch=49).plan(50)  # starts in the last epoch


def test_width_scaled_start_beyond_the_run_names_the_scaling_and_what_works():
    m = SelfAdaptiveTraining(alpha=0.9, start_epoch=40, width_scaling=True, width=8, reference_width=128)
    assert m.start_epoch == 640
    with pytest.raises(UserError) as e:
        m.plan(600)
    msg = str(e.value)
    assert "becomes 640 by width scaling (width 8, reference_width 128) >= trainer.epochs=600" in msg
    assert "trainer.epochs > 640" in msg and "start_epoch <= 37" in msg and "max_start_fraction" in msg
    ok = SelfAdaptiveTraining(alpha=0.9, start_epoch=37, width_scaling=True, width=8, reference_width=128)
    ok.plan(600)  # int(37 * 128 / 8) = 592 < 600: the largest start that works, as the message says
    assert SelfAdaptiveTraining(alpha=0.9, start_epoch=38, width_scaling=True, width=8,
                                reference_width=128).start_epoch >= 600


def test_max_start_fraction_caps_a_width_scaled_start():
    m = SelfAdaptiveTraining(alpha=0.9, start_epoch=40, width_scaling=True, width=8, reference_width=128,
                             max_start_fraction=0.5)
    m.plan(600)
    assert m.start_epoch == 300 and m.hparams()["scaled_start_epoch"] == 640
    wide = SelfAdaptiveTraining(alpha=0.9, start_epoch=40, width_scaling=True, width=512, reference_width=128,
                                max_start_fraction=0.5)
    wide.plan(600)
    assert wide.start_epoch == 10  # below the cap: unchanged


@pytest.mark.parametrize("kwargs,message", [
    ({"alpha": "abc"}, "alpha='abc' is not a number"),
    ({"start_epoch": 1.5}, "start_epoch=1.5 is not an integer"),
    ({"max_start_fraction": 1.5}, "max_start_fraction=1.5 is out of range"),
])
def test_bad_values_are_one_line_errors(kwargs, message):
    with pytest.raises(UserError, match="^" + re.escape(message)):
        SelfAdaptiveTraining(**kwargs)
