"""Forward/backward loss correction with a known transition matrix (by hand), Patrini
et al.'s estimator of T, the switch from CE at ``estimate_epoch``, and bad matrices."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sat.errors import UserError
from sat.methods.correction import (
    BackwardCorrection,
    ForwardCorrection,
    backward_corrected_loss,
    check_transition,
    estimate_transition,
    forward_corrected_loss,
)

T = [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.0, 0.3, 0.7]]
LOGITS = torch.tensor([[1.0, 0.0, -1.0], [0.2, 0.3, 0.1], [-0.5, 2.0, 0.0]])
LABELS = torch.tensor([1, 2, 0])


def test_forward_correction_by_hand():
    p = LOGITS.double().softmax(1).tolist()
    # (T^T p)_y = sum_i T[i][y] p_i
    expected = [-math.log(sum(T[i][y] * p[n][i] for i in range(3))) for n, y in enumerate(LABELS.tolist())]
    loss = forward_corrected_loss(LOGITS, LABELS, torch.tensor(T))
    assert loss.item() == pytest.approx(sum(expected) / 3, rel=1e-6)


def test_backward_correction_by_hand_and_unbiased():
    inverse = torch.linalg.inv(torch.tensor(T, dtype=torch.float64))
    losses = -LOGITS.double().log_softmax(1)
    expected = [sum(inverse[y, j].item() * losses[n, j].item() for j in range(3)) for n, y in enumerate(LABELS.tolist())]
    assert backward_corrected_loss(LOGITS, LABELS, inverse).item() == pytest.approx(sum(expected) / 3, rel=1e-5)
    # the point of it: averaged over the noisy labels a true class i produces (row i of T),
    # the corrected loss is the clean loss of class i
    for true in range(3):
        noisy_mean = sum(T[true][j] * backward_corrected_loss(LOGITS[:1], torch.tensor([j]), inverse).item()
                         for j in range(3))
        assert noisy_mean == pytest.approx(losses[0, true].item(), rel=1e-5)


def test_estimator_takes_each_class_from_its_most_confident_sample():
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]])
    assert torch.equal(estimate_transition(probs, percentile=100), probs[[0, 2, 3]].double())
    # the 97th percentile (interpolation "higher") of 5 values is the largest: it is dropped as an outlier
    assert torch.equal(estimate_transition(probs, percentile=97), probs[[1, 1, 4]].double())


def test_correction_starts_at_estimate_epoch_with_the_estimated_matrix():
    method = ForwardCorrection(estimate_epoch=2, percentile=100)
    method.setup(LABELS, 3)
    assert method.loss(LOGITS, LABELS, torch.arange(3), epoch=1).item() == pytest.approx(
        F.cross_entropy(LOGITS, LABELS).item())
    fake = torch.log(torch.tensor(T)) * 1.0  # a model whose predictions are T's rows

    assert method.before_epoch(1, None, lambda net: fake) == {}  # not yet
    metrics = method.before_epoch(2, None, lambda net: fake)
    assert torch.allclose(method.transition, torch.tensor(T, dtype=torch.float64), atol=1e-6)
    assert metrics["method/transition_diagonal_mean"] == pytest.approx((0.8 + 0.7 + 0.7) / 3, rel=1e-5)
    assert method.loss(LOGITS, LABELS, torch.arange(3), epoch=2).item() == pytest.approx(
        forward_corrected_loss(LOGITS, LABELS, torch.tensor(T)).item(), rel=1e-5)
    fresh = ForwardCorrection(estimate_epoch=2)
    fresh.setup(LABELS, 3)
    fresh.load_state_dict(method.state_dict())  # the estimate is state: a resumed run keeps it
    assert torch.equal(fresh.transition, method.transition)


def test_a_given_matrix_corrects_from_the_first_epoch():
    method = BackwardCorrection(transition=T)
    method.setup(LABELS, 3)
    inverse = torch.linalg.inv(torch.tensor(T, dtype=torch.float64))
    assert method.loss(LOGITS, LABELS, torch.arange(3), epoch=0).item() == pytest.approx(
        backward_corrected_loss(LOGITS, LABELS, inverse).item(), rel=1e-5)


def test_bad_matrices_are_one_line_errors():
    with pytest.raises(UserError, match=r"not row-stochastic: row 1 sums to 1.1"):
        check_transition([[1.0, 0.0], [0.6, 0.5]])
    with pytest.raises(UserError, match="negative"):
        check_transition([[1.2, -0.2], [0.0, 1.0]])
    with pytest.raises(UserError, match=r"shape \(2, 3\)"):
        check_transition([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    with pytest.raises(UserError, match="not a matrix"):
        check_transition("identity")
    with pytest.raises(UserError, match="dataset has 3 classes"):
        ForwardCorrection(transition=[[1.0, 0.0], [0.0, 1.0]]).setup(LABELS, 3)
    with pytest.raises(UserError, match="singular"):
        BackwardCorrection(transition=[[0.5, 0.5], [0.5, 0.5]]).setup(torch.tensor([0, 1]), 2)
    with pytest.raises(UserError, match="never start"):
        ForwardCorrection(estimate_epoch=5).plan(5)
    for message in ("row-stochastic", "singular"):
        with pytest.raises(UserError) as e:
            (check_transition([[1.0, 0.0], [0.6, 0.5]]) if message == "row-stochastic"
             else BackwardCorrection(transition=[[0.5, 0.5], [0.5, 0.5]]).setup(torch.tensor([0, 1]), 2))
        assert "\n" not in str(e.value)
