"""Self-supervised building blocks against hand computations (sat.ssl)."""

import math

import pytest
import torch
from torch import nn

from sat.data.loader import DeviceLoader
from sat.errors import UserError
from sat.models import MLP, ResNet, SmallCNN, with_normalization
from sat.ssl import backbone
from sat.ssl.bank import TargetBank
from sat.ssl.collapse import effective_rank, normalized_std
from sat.ssl.ema import copy_weights, cosine_tau, ema_update
from sat.ssl.knn import knn_accuracy, knn_predict
from sat.ssl.losses import check_temperature, cosine_loss, negative_cosine, nt_xent
from sat.ssl.probe import linear_probe, select_labelled


def test_nt_xent_equals_a_naive_double_loop():
    g = torch.Generator().manual_seed(0)
    z1, z2, t = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g), 0.3
    z = torch.cat([z1, z2])
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        pair = (i + 5) % n2

        def cos(a, b):
            return float(z[a] @ z[b] / (z[a].norm() * z[b].norm()))

        denominator = sum(math.exp(cos(i, j) / t) for j in range(n2) if j != i)
        total += -math.log(math.exp(cos(i, pair) / t) / denominator)
    assert float(nt_xent(z1, z2, t)) == pytest.approx(total / n2, rel=1e-5)
    # a DDP process's share: its pairs' rows against every key; the shares' means, weighted, are the whole
    first, rest = nt_xent(z1, z2, t, queries=torch.tensor([0, 1, 2])), nt_xent(z1, z2, t, queries=torch.tensor([3, 4]))
    assert float(3 * first + 2 * rest) / 5 == pytest.approx(total / n2, rel=1e-5)


def test_cosine_losses_by_hand():
    p, z = torch.tensor([[1.0, 0.0], [3.0, 4.0]]), torch.tensor([[0.0, 2.0], [3.0, 4.0]])
    # cos = 0 and 1: 2 - 2 cos = 2 and 0; -cos = 0 and -1
    assert cosine_loss(p, z).tolist() == pytest.approx([2.0, 0.0], abs=1e-6)
    assert negative_cosine(p, z).tolist() == pytest.approx([0.0, -1.0], abs=1e-6)


def test_ema_update_and_cosine_schedule():
    online, target = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        online.weight.fill_(1.0), online.bias.fill_(2.0), target.weight.fill_(0.0), target.bias.fill_(0.0)
    ema_update(target, online, tau=0.75)
    assert target.weight.tolist() == [[0.25, 0.25]] and target.bias.tolist() == [0.5]
    copy_weights(target, online)
    assert target.bias.tolist() == [2.0]
    assert cosine_tau(0.99, 0, 100) == pytest.approx(0.99)
    assert cosine_tau(0.99, 50, 100) == pytest.approx(0.995)
    assert cosine_tau(0.99, 100, 100) == pytest.approx(1.0)


def test_bank_first_visit_then_renormalised_update():
    bank = TargetBank(alpha=0.5, init="first")
    bank.allocate(3, 2)
    t = bank.update(torch.tensor([2, 0]), torch.tensor([[0.0, 5.0], [2.0, 0.0]]))
    assert t.tolist() == [[0.0, 1.0], [1.0, 0.0]]  # first visit: the normalised embedding itself
    assert bank.visited.tolist() == [True, False, True]
    t = bank.update(torch.tensor([2]), torch.tensor([[3.0, 0.0]]))
    # 0.5 * (0, 1) + 0.5 * (1, 0) = (0.5, 0.5), renormalised to (1, 1) / sqrt(2)
    assert t.tolist()[0] == pytest.approx([2 ** -0.5, 2 ** -0.5])
    assert bank.targets[2].tolist() == pytest.approx([2 ** -0.5, 2 ** -0.5])
    assert bank.targets[1].tolist() == [0.0, 0.0]


def test_bank_random_init_has_no_first_visit():
    bank = TargetBank(alpha=0.9, init="random")
    bank.allocate(4, 3, generator=torch.Generator().manual_seed(0))
    assert bank.targets.norm(dim=1).tolist() == pytest.approx([1.0] * 4)
    before = bank.targets[1].clone()
    t = bank.update(torch.tensor([1]), torch.tensor([[1.0, 0.0, 0.0]]))
    expected = torch.nn.functional.normalize(0.9 * before + 0.1 * torch.tensor([1.0, 0.0, 0.0]), dim=0)
    assert t[0].tolist() == pytest.approx(expected.tolist())


def test_knn_equals_brute_force():
    g = torch.Generator().manual_seed(1)
    bank, labels, queries = torch.randn(40, 6, generator=g), torch.randint(3, (40,), generator=g), torch.randn(7, 6, generator=g)
    k, t = 5, 0.1
    pred = knn_predict(bank, labels, queries, 3, k=k, temperature=t, chunk=3)
    for q, p in zip(queries, pred):
        sims = [float(q @ b / (q.norm() * b.norm())) for b in bank]
        nearest = sorted(range(40), key=lambda i: -sims[i])[:k]
        votes = [sum(math.exp(sims[i] / t) for i in nearest if labels[i] == c) for c in range(3)]
        assert int(p) == max(range(3), key=lambda c: votes[c])
    # the bank's own points find themselves (k=1)
    assert knn_accuracy(bank, labels, bank, labels, 3, k=1) == 1.0


def test_linear_probe_separable_and_random_features():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(400) % 4
    separable = torch.nn.functional.one_hot(labels, 4).float() * 5 + 0.1 * torch.randn(400, 4, generator=g)
    assert linear_probe(separable[:300], labels[:300], separable[300:], labels[300:]) == 1.0
    noise = torch.randn(2000, 8, generator=g)
    labels = torch.randint(4, (2000,), generator=g)
    assert abs(linear_probe(noise[:1000], labels[:1000], noise[1000:], labels[1000:]) - 0.25) < 0.05


def test_label_subsets():
    labels = torch.arange(100) % 5
    picked = select_labelled(labels, labels_per_class=3, seed=0)
    assert len(picked) == 15 and torch.bincount(labels[picked]).tolist() == [3] * 5
    assert not torch.equal(picked, select_labelled(labels, labels_per_class=3, seed=1))
    assert len(select_labelled(labels, label_fraction=0.1)) == 10
    assert len(select_labelled(labels)) == 100
    with pytest.raises(UserError, match="^labels_per_class=21 is more than class 0's 20 training images"):
        select_labelled(labels, labels_per_class=21)


def test_collapse_diagnostics():
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(2000, 16, generator=g)
    assert normalized_std(spread) == pytest.approx(1.0, abs=0.05)
    collapsed = torch.ones(100, 16) + 1e-6 * torch.randn(100, 16, generator=g)
    assert normalized_std(collapsed) < 1e-3
    assert effective_rank(collapsed) == pytest.approx(1.0, abs=0.01)
    assert effective_rank(torch.eye(8)) == pytest.approx(8.0, rel=1e-4)


@pytest.mark.parametrize("call, message", [
    (lambda: TargetBank(alpha=1.0), "alpha=1.0 is out of range; accepted: a number >= 0 and < 1"),
    (lambda: TargetBank(alpha=-0.1), "alpha=-0.1 is out of range"),
    (lambda: TargetBank(init="zeros"), "init='zeros' is not supported; accepted: first, random"),
    (lambda: check_temperature(0.0), "temperature=0.0 is out of range; accepted: a number > 0"),
    (lambda: knn_predict(torch.ones(2, 2), torch.zeros(2).long(), torch.ones(1, 2), 2, k=0),
     "k=0 is out of range; accepted: an integer >= 1"),
    (lambda: knn_predict(torch.ones(2, 2), torch.zeros(2).long(), torch.ones(1, 2), 2, temperature=-1),
     "temperature=-1.0 is out of range"),
])
def test_bad_values_one_line(call, message):
    with pytest.raises(UserError) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("net, channels", [(SmallCNN(3, (1, 8, 8), width=4), 1), (MLP(3, (1, 8, 8), width=8), 1),
                                           (ResNet(3, (3, 8, 8), width=2), 3)])
def test_backbone_features_and_classifier_make_the_logits(net, channels):
    model = with_normalization(net, [0.5] * channels, [0.25] * channels).eval()
    x = torch.rand(3, channels, 8, 8)
    f = backbone.features(model, x)
    assert f.shape == (3, backbone.num_features(model))
    assert torch.allclose(backbone.classifier(model)(f), model(x), atol=1e-6)
    images = (x * 255).to(torch.uint8)
    labels = torch.tensor([2, 0, 1])
    features, y = backbone.extract(model, DeviceLoader(images, labels, 2))  # any split's loader, in order
    assert torch.allclose(features, backbone.features(model, images.float() / 255), atol=1e-6)
    assert torch.equal(y, labels)

