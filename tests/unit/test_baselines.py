"""Noisy-label baselines (GCE, SCE, bootstrapping, ELR, co-teaching) against hand
computation in float64, and their configs."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from sat.errors import UserError
from sat.methods.bootstrapping import HardBootstrapping, SoftBootstrapping
from sat.methods.elr import EarlyLearningRegularization
from sat.methods.gce import GeneralizedCrossEntropy
from sat.methods.sce import SymmetricCrossEntropy

CONF = Path(__file__).resolve().parents[2] / "conf" / "method"
LOGITS = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [10.0, 0.0, -3.0]]  # the last row has p < 1e-4
LABELS = [0, 2, 1]


def softmax(row):
    e = [math.exp(v - max(row)) for v in row]
    return [v / sum(e) for v in e]


def batch(rows=LOGITS, labels=LABELS):
    return torch.tensor(rows, requires_grad=True), torch.tensor(labels)


def run(method, rows=LOGITS, labels=LABELS, index=None, epoch=0):
    logits, y = batch(rows, labels)
    index = torch.arange(len(labels)) if index is None else torch.tensor(index)
    return method.loss(logits, y, index, epoch)


# --- GCE ---------------------------------------------------------------------------

def test_gce_matches_hand_computation():
    q = 0.7
    expected = sum((1 - softmax(r)[y] ** q) / q for r, y in zip(LOGITS, LABELS)) / len(LABELS)
    assert run(GeneralizedCrossEntropy(q=q)).item() == pytest.approx(expected, rel=1e-6)


def test_gce_near_q_zero_is_cross_entropy_and_q_one_is_mae():
    ce = -sum(math.log(softmax(r)[y]) for r, y in zip(LOGITS, LABELS)) / 3
    mae = sum(1 - softmax(r)[y] for r, y in zip(LOGITS, LABELS)) / 3
    assert run(GeneralizedCrossEntropy(q=1e-4)).item() == pytest.approx(ce, rel=1e-3)
    assert run(GeneralizedCrossEntropy(q=1.0)).item() == pytest.approx(mae, rel=1e-6)


def test_gce_gradient_finite_where_probability_underflows():
    logits, y = batch([[200.0, -200.0]], [1])  # p_y == 0 in float32
    GeneralizedCrossEntropy().loss(logits, y, torch.tensor([0]), 0).backward()
    assert torch.isfinite(logits.grad).all()


# --- SCE ---------------------------------------------------------------------------

@pytest.mark.parametrize("alpha,beta,log_zero", [(0.1, 1.0, -4.0), (6.0, 0.1, -4.0), (1.0, 1.0, math.log(1e-4))])
def test_sce_matches_hand_computation(alpha, beta, log_zero):
    ce = rce = 0.0
    for r, y in zip(LOGITS, LABELS):
        p = softmax(r)
        ce -= math.log(p[y])
        rce -= sum(p[k] * (0.0 if k == y else log_zero) for k in range(3))  # -sum p log y, log 0 := A
    expected = (alpha * ce + beta * rce) / 3
    loss = run(SymmetricCrossEntropy(alpha=alpha, beta=beta, log_zero=log_zero))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


# --- bootstrapping -----------------------------------------------------------------

def bootstrap_by_hand(b, hard):
    total = 0.0
    for r, y in zip(LOGITS, LABELS):
        p = softmax(r)
        z = [1.0 if k == max(range(3), key=lambda j: p[j]) else 0.0 for k in range(3)] if hard else p
        total -= sum((b * (k == y) + (1 - b) * z[k]) * math.log(p[k]) for k in range(3))
    return total / 3


def test_soft_bootstrapping_matches_hand_computation():
    assert run(SoftBootstrapping()).item() == pytest.approx(bootstrap_by_hand(0.95, hard=False), rel=1e-6)


def test_hard_bootstrapping_matches_hand_computation():
    # sample 1's argmax (class 1) differs from its label (2): the hard target is a mix
    assert run(HardBootstrapping()).item() == pytest.approx(bootstrap_by_hand(0.8, hard=True), rel=1e-6)


def test_soft_bootstrapping_gradient_flows_through_the_prediction_in_the_target():
    """The paper's objective, -sum (b y + (1-b) p) log p with p not detached."""
    logits, y = batch()
    SoftBootstrapping(beta=0.95).loss(logits, y, torch.arange(3), 0).backward()
    ref = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    log_p = ref.log_softmax(1)
    mix = 0.95 * F.one_hot(y, 3) + 0.05 * log_p.exp()
    (-(mix * log_p).sum(1).mean()).backward()
    assert torch.allclose(logits.grad.double(), ref.grad, atol=1e-6)
    detached = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    lp = detached.log_softmax(1)
    (-((0.95 * F.one_hot(y, 3) + 0.05 * lp.exp().detach()) * lp).sum(1).mean()).backward()
    assert not torch.allclose(logits.grad.double(), detached.grad, atol=1e-4)  # the two readings differ here


# --- ELR ---------------------------------------------------------------------------

def test_elr_targets_and_loss_over_several_steps_by_hand():
    beta, lam, n = 0.7, 3.0, 4
    m = EarlyLearningRegularization(beta=beta, lam=lam)
    m.setup(torch.tensor([0, 2, 1, 1]), num_classes=3)
    assert m.soft_labels().tolist() == [[0.0] * 3] * n  # the reference starts from zero
    t = [[0.0] * 3 for _ in range(n)]
    steps = [  # (logits, labels, dataset indices): sample 2 is seen three times, 3 never
        (LOGITS, [0, 2, 1], [0, 1, 2]),
        ([[0.1, 0.2, 0.3], [-1.0, 4.0, 0.5]], [1, 1], [2, 0]),
        ([[3.0, -2.0, 9.5]], [2], [2]),
    ]
    for rows, labels, index in steps:
        expected = 0.0
        for r, y, i in zip(rows, labels, index):
            p = [min(max(v, 1e-4), 1 - 1e-4) for v in softmax(r)]
            t[i] = [beta * t[i][k] + (1 - beta) * p[k] / sum(p) for k in range(3)]
            ce = -math.log(softmax(r)[y])  # on the raw probabilities, no clamp
            expected += ce + lam * math.log(1 - sum(t[i][k] * p[k] for k in range(3)))
        loss = run(m, rows, labels, index)
        assert loss.item() == pytest.approx(expected / len(rows), rel=1e-5)
        assert m.soft_labels().double().flatten().tolist() == pytest.approx(sum(t, []), rel=1e-5, abs=1e-8)
    assert m.soft_labels()[3].tolist() == [0.0, 0.0, 0.0]


def test_elr_target_is_detached_and_clamp_stops_the_regulariser_gradient():
    m = EarlyLearningRegularization(beta=0.7, lam=3.0)
    m.setup(torch.tensor([0, 2, 1]), num_classes=3)
    m.targets[:] = torch.tensor([[0.2, 0.5, 0.3]] * 3)
    logits, y = batch()
    m.loss(logits, y, torch.arange(3), 0).backward()
    assert not m.soft_labels().requires_grad
    # by hand in float64: t fixed (a constant), gradient through the clamped p only
    t_new = [[0.7 * o + 0.3 * v / sum(ps) for o, v in zip([0.2, 0.5, 0.3], ps)]
             for ps in ([min(max(v, 1e-4), 1 - 1e-4) for v in softmax(r)] for r in LOGITS)]
    ref = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    p = ref.softmax(1).clamp(1e-4, 1 - 1e-4)
    (F.cross_entropy(ref, y) + 3.0 * torch.log(1 - (torch.tensor(t_new, dtype=torch.float64) * p).sum(1)).mean()).backward()
    assert torch.allclose(logits.grad.double(), ref.grad, atol=1e-6)


def test_elr_targets_round_trip_through_state_dict():
    m = EarlyLearningRegularization()
    m.setup(torch.tensor([0, 2, 1]), 3)
    run(m)
    fresh = EarlyLearningRegularization()
    fresh.setup(torch.tensor([0, 2, 1]), 3)
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh.soft_labels(), m.soft_labels()) and m.soft_labels().abs().sum() > 0


# --- shared ------------------------------------------------------------------------

ALL = [GeneralizedCrossEntropy, SymmetricCrossEntropy, SoftBootstrapping, HardBootstrapping, EarlyLearningRegularization]


@pytest.mark.parametrize("cls", ALL)
def test_loss_is_float32_for_bf16_logits(cls):
    m = cls()
    m.setup(torch.tensor(LABELS), 3)
    logits = torch.tensor(LOGITS, dtype=torch.bfloat16, requires_grad=True)
    loss = m.loss(logits, torch.tensor(LABELS), torch.arange(3), 0)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert logits.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("cls,kwargs,bad", [
    (GeneralizedCrossEntropy, {"q": 0.0}, "^q=0.0"),
    (GeneralizedCrossEntropy, {"q": 1.5}, "^q=1.5"),
    (SymmetricCrossEntropy, {"alpha": -1.0}, "^alpha=-1.0"),
    (SymmetricCrossEntropy, {"log_zero": 4.0}, "^log_zero=4.0"),
    (SoftBootstrapping, {"beta": 1.2}, "^beta=1.2"),
    (HardBootstrapping, {"beta": -0.1}, "^beta=-0.1"),
    (EarlyLearningRegularization, {"beta": 1.0}, "^beta=1.0"),
    (EarlyLearningRegularization, {"lam": -3.0}, "^lam=-3.0"),
])
def test_bad_hyper_parameters_name_the_value(cls, kwargs, bad):
    with pytest.raises(UserError, match=bad.replace(".", r"\.")):
        cls(**kwargs)


@pytest.mark.parametrize("name,cls,defaults", [
    ("gce", GeneralizedCrossEntropy, {"q": 0.7}),
    ("sce", SymmetricCrossEntropy, {"alpha": 0.1, "beta": 1.0, "log_zero": -4.0}),
    ("bootstrap_soft", SoftBootstrapping, {"beta": 0.95}),
    ("bootstrap_hard", HardBootstrapping, {"beta": 0.8}),
    ("elr", EarlyLearningRegularization, {"beta": 0.7, "lam": 3.0}),
])
def test_configs_name_the_constructor_arguments_with_paper_defaults(name, cls, defaults):
    from hydra.utils import instantiate

    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    assert set(cfg) - {"_target_"} == set(inspect.signature(cls).parameters)
    method = instantiate(cfg)
    assert type(method) is cls and method.hparams() == defaults
