"""mixup and ELR+: losses and whole steps replayed by hand on a tiny MLP (the random
draws replayed from the same seed), the weight average, state and bad values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sat.errors import UserError
from sat.methods.elr_plus import ELRPlus, sigmoid_rampup, update_weight_average
from sat.methods.mixup import Mixup, draw_lambda


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


X = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
Y = torch.tensor([0, 1, 2, 1, 0])


def replay_draws(seed: int, alpha: float, n: int, symmetric_max: bool) -> tuple[float, torch.Tensor]:
    torch.manual_seed(seed)
    lam = float(torch.distributions.Beta(torch.tensor(alpha), torch.tensor(alpha)).sample())
    return (max(lam, 1 - lam) if symmetric_max else lam), torch.randperm(n)


def test_mixup_step_by_hand():
    torch.manual_seed(0)
    model, method = mlp(), Mixup(alpha=1.0)
    torch.manual_seed(5)
    loss, logits = method(model, X, Y, torch.arange(5), epoch=0)
    lam, perm = replay_draws(5, 1.0, 5, symmetric_max=False)
    out = model(lam * X + (1 - lam) * X[perm]).double().log_softmax(1)
    expected = -(lam * out[torch.arange(5), Y] + (1 - lam) * out[torch.arange(5), Y[perm]]).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(logits, model(X))  # the statistics see the clean batch
    assert model.training


def test_mixup_with_alpha_zero_is_cross_entropy():
    assert draw_lambda(0.0) == 1.0
    torch.manual_seed(0)
    model = mlp()
    loss, _ = Mixup(alpha=0.0)(model, X, Y, torch.arange(5), epoch=0)
    assert loss.item() == pytest.approx(F.cross_entropy(model(X), Y).item(), rel=1e-6)
    with pytest.raises(UserError, match=r"^alpha=-1"):
        Mixup(alpha=-1)


def test_sigmoid_rampup_and_weight_average():
    assert sigmoid_rampup(0, 0) == 1.0 and sigmoid_rampup(10, 10) == 1.0
    assert sigmoid_rampup(5, 10) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(0, 10) == pytest.approx(math.exp(-5))
    a, w = nn.Linear(2, 1), nn.Linear(2, 1)
    before = a.weight.detach().clone()
    update_weight_average(a, w, 0.9)
    assert torch.allclose(a.weight, 0.9 * before + 0.1 * w.weight)


def attached_elr(**kw) -> tuple[nn.Module, ELRPlus]:
    torch.manual_seed(0)
    model, method = mlp(), ELRPlus(**kw)
    method.attach_model(mlp)
    method.setup(torch.zeros(7, dtype=torch.long), 3)
    return model, method


def test_elr_plus_step_by_hand():
    model, method = attached_elr(ema_rampup_steps=0, ema_decay=0.5)
    index = torch.tensor([6, 0, 2, 3, 5])
    torch.manual_seed(1)
    method(model, X, Y, index, epoch=0)  # step 0: the averages start as copies of the networks
    assert torch.equal(method.model_average[0].weight, model[0].weight)
    # move the networks, so that the next step's averages differ from both old and new weights
    with torch.no_grad():
        for p in [*model.parameters(), *method.peer.parameters()]:
            p.add_(0.1)
    old_targets = method.targets.clone()
    averages = [{k: v.clone() for k, v in net.state_dict().items()} for net in (method.model_average, method.peer_average)]
    torch.manual_seed(9)
    loss, logits = method(model, X, Y, index, epoch=0)

    # by hand: averages <- 0.5 * average + 0.5 * network, then each network's targets from the OTHER's average
    expected_averages = []
    for saved, net in zip(averages, (model, method.peer)):
        avg = mlp()
        avg.load_state_dict({k: 0.5 * saved[k] + 0.5 * v for k, v in net.state_dict().items()})
        expected_averages.append(avg)
    assert torch.allclose(method.model_average[0].weight, expected_averages[0][0].weight)
    lam, perm = replay_draws(9, 1.0, 5, symmetric_max=True)
    onehot = F.one_hot(Y, 3).float()
    expected = 0.0
    for row, (net, other_avg) in enumerate(((model, expected_averages[1]), (method.peer, expected_averages[0]))):
        p = other_avg(X).softmax(1)
        t = 0.7 * old_targets[row, index] + 0.3 * p
        assert torch.allclose(method.targets[row, index], t, atol=1e-6)
        out = net(lam * X + (1 - lam) * X[perm])
        q = lam * t + (1 - lam) * t[perm]
        ce = -((lam * onehot + (1 - lam) * onehot[perm]) * out.log_softmax(1)).sum(1).mean()
        reg = torch.log(1 - (q * out.softmax(1).clamp(1e-4, 1 - 1e-4)).sum(1)).mean()
        expected = expected + ce + 3.0 * reg
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(logits, model(X))
    assert int(method.steps) == 2


def test_elr_plus_weight_average_ramps_as_the_authors_code():
    """After optimizer step k the authors average with ``ema_alpha * sigmoid_rampup(k + 1,
    ema_step)`` (ELR_plus/trainer/trainer.py: ``update_ema_variables(..., global_step +
    local_step)`` after ``local_step += 1``, then ``sigmoid_rampup(global_step + 1, ...)``)."""
    model, method = attached_elr(ema_rampup_steps=4, ema_decay=0.9)
    assert [method.average_decay(k) for k in (1, 2, 3)] == [0.9 * sigmoid_rampup(k + 1, 4) for k in (1, 2, 3)]
    index = torch.arange(5)
    method(model, X, Y, index, epoch=0)  # before step 1: the average starts as a copy
    for k in (1, 2):  # the optimizer's step k, then the next forward averages its weights in
        with torch.no_grad():
            for p in [*model.parameters(), *method.peer.parameters()]:
                p.add_(0.1 * k)
        before = method.model_average[0].weight.detach().clone()
        method(model, X, Y, index, epoch=0)
        a = 0.9 * math.exp(-5 * (1 - (k + 1) / 4) ** 2)  # sigmoid_rampup(k + 1, 4), written out
        assert torch.allclose(method.model_average[0].weight, a * before + (1 - a) * model[0].weight)


def test_elr_plus_state_resumes_with_its_step_count_and_averages():
    model, method = attached_elr()
    for _ in range(3):
        method(model, X, Y, torch.arange(5), epoch=0)
    _, fresh = attached_elr()
    fresh.load_state_dict(method.state_dict())
    assert int(fresh.steps) == 3 and torch.equal(fresh.targets, method.targets)
    assert torch.equal(fresh.peer_average[2].weight, method.peer_average[2].weight)
    assert fresh._host_steps is None  # read from the loaded buffer at the next step
    assert not any(p.requires_grad for p in fresh.model_average.parameters())
    with pytest.raises(UserError, match=r"^beta=1"):
        ELRPlus(beta=1)
