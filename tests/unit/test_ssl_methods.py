"""The self-supervised methods (sat.methods.ssl) step by step on tiny images."""

import pytest
import torch
import torch.nn.functional as F

from sat.data.views import TwoViews
from sat.errors import UserError
from sat.methods.ssl import BYOL, SelfSupervisedSAT, SimCLR, SimSiam, probe_loss_of
from sat.models import SmallCNN, with_normalization
from sat.ssl import backbone

N = 48
HEADS = dict(projector_hidden_dim=32, projector_dim=16)


def _build():
    return with_normalization(SmallCNN(4, (1, 8, 8), width=4), [0.3], [0.3])


def _method(cls, **kwargs):
    heads = HEADS if cls is SimCLR else {**HEADS, "predictor_hidden_dim": 32}
    return cls(**heads, **kwargs)


def _train(cls, labels, steps=3, epochs=4, seed=0, **kwargs):
    """A few steps of ``cls`` on fixed random images; returns the model and the method."""
    torch.manual_seed(seed)
    method, model = _method(cls, **kwargs), _build()
    method.attach_model(_build)
    method.schedule(epochs)
    method.setup(labels, 4)
    optimizer = torch.optim.SGD([*model.parameters(), *method.parameters()], lr=0.05, momentum=0.9)
    images = (torch.rand(N, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    views, g = TwoViews(crop_scale=(0.3, 1.0)), torch.Generator().manual_seed(2)
    for step in range(steps):
        index = torch.randperm(N, generator=g)[:16]
        loss, logits = method(model, views(images[index], g), labels[index], index, epoch=step)
        assert logits.shape == (16, 4) and torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, method


def _unsupervised_weights(model, method):
    probe = {id(p) for p in backbone.classifier(model).parameters()}
    weights = [p for p in model.parameters() if id(p) not in probe]
    return [w.detach().clone() for w in weights + list(method.networks()[0].parameters())
            + [p for net in method.networks()[1:] for p in net.parameters()]]


@pytest.mark.parametrize("cls, kwargs", [(BYOL, {}), (SimSiam, {}), (SimCLR, {}),
                                         (SelfSupervisedSAT, dict(start_epoch=1))])
def test_training_never_reads_a_label(cls, kwargs):
    labels = torch.arange(N) % 4
    shuffled = labels[torch.randperm(N, generator=torch.Generator().manual_seed(3))]
    a_model, a_method = _train(cls, labels, **kwargs)
    b_model, b_method = _train(cls, shuffled, **kwargs)
    for a, b in zip(_unsupervised_weights(a_model, a_method), _unsupervised_weights(b_model, b_method), strict=True):
        assert torch.equal(a, b)  # backbone, projector, predictor: bit-identical
    if cls is SelfSupervisedSAT:
        assert torch.equal(a_method.bank.targets, b_method.bank.targets)
    # ... while the probe did learn from the labels
    assert not torch.equal(backbone.classifier(a_model).weight, backbone.classifier(b_model).weight)


def test_ema_target_starts_as_the_online_network_then_lags():
    torch.manual_seed(0)
    method, model = _method(BYOL), _build()
    method.attach_model(_build)
    method.plan(4)
    optimizer = torch.optim.SGD([*model.parameters(), *method.parameters()], lr=0.1)
    images = (torch.rand(8, 1, 8, 8) * 255).to(torch.uint8)
    views, g, y, index = TwoViews(), torch.Generator().manual_seed(0), torch.zeros(8, dtype=torch.long), torch.arange(8)

    def step(epoch):
        loss, _ = method(model, views(images, g), y, index, epoch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    w0 = [p.detach().clone() for p in model.parameters()]
    step(0)  # the target starts as a copy of the online weights
    assert all(torch.equal(t, w) for t, w in zip(method.target_model.parameters(), w0))
    assert not any(t.requires_grad for t in method.target_model.parameters())
    w1 = [p.detach().clone() for p in model.parameters()]
    step(1)  # before step 2's loss: target = tau * target + (1 - tau) * (what step 1 made), tau at epoch 1 of 4
    tau = 1 - 0.01 * (torch.cos(torch.tensor(torch.pi / 4)).item() + 1) / 2
    assert method.tau(1) == pytest.approx(tau)
    for t, a, b in zip(method.target_model.parameters(), w0, w1):
        assert torch.allclose(t, tau * a + (1 - tau) * b, atol=1e-7)


def test_ssl_sat_bank_first_visit_is_the_mean_target_projection():
    torch.manual_seed(0)
    method, model = _method(SelfSupervisedSAT, start_epoch=0, target_network="online"), _build()
    method.attach_model(_build)
    method.plan(2)
    method.setup(torch.zeros(N, dtype=torch.long), 4)
    images = (torch.rand(8, 1, 8, 8) * 255).to(torch.uint8)
    v1, v2 = TwoViews()(images, torch.Generator().manual_seed(0))
    with torch.no_grad():  # what the step will compute (train-mode BatchNorm: batch statistics)
        z1, z2 = (method.projector(backbone.features(model, v)) for v in (v1, v2))
    index = torch.arange(10, 18)
    method(model, (v1, v2), torch.zeros(8, dtype=torch.long), index, epoch=0)
    expected = F.normalize(F.normalize((z1 + z2) / 2, dim=1), dim=1)
    assert torch.allclose(method.bank.targets[index], expected, atol=1e-5)
    assert method.bank.visited.sum() == 8 and bool(method.bank.visited[index].all())


def test_ssl_sat_cross_view_target_before_start_epoch():
    _, method = _train(SelfSupervisedSAT, torch.arange(N) % 4, steps=2, start_epoch=3)
    assert not bool(method.bank.visited.any())  # epochs 0 and 1: the bank is not touched yet
    _, method = _train(SelfSupervisedSAT, torch.arange(N) % 4, steps=2, start_epoch=1)
    assert int(method.bank.visited.sum()) == 16


def test_method_state_round_trips_through_state_dict():
    _, method = _train(SelfSupervisedSAT, torch.arange(N) % 4, start_epoch=1)
    state = method.state_dict()
    assert {"bank.targets", "bank.visited", "target_started"} <= set(state)
    assert any(k.startswith("target_model.") for k in state) and any(k.startswith("predictor.") for k in state)
    fresh = _method(SelfSupervisedSAT, start_epoch=1)
    fresh.attach_model(_build)
    fresh.setup(torch.zeros(N, dtype=torch.long), 4)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.bank.targets, method.bank.targets) and bool(fresh.target_started)


def test_refusals_one_line():
    method = _method(SelfSupervisedSAT, start_epoch=5)
    # the library names its argument; the task layer puts the config path in front (method.start_epoch)
    with pytest.raises(UserError, match=r"^start_epoch=5 >= trainer.epochs=5, so the per-image targets would "
                                        r"never start; accepted: start_epoch < 5"):
        method.plan(5)
    with pytest.raises(UserError, match="^target_network='both' is not supported; accepted: ema, online"):
        _method(SelfSupervisedSAT, target_network="both")
    with pytest.raises(UserError, match="^temperature=0.0 is out of range"):
        SimCLR(temperature=0.0)
    with pytest.raises(UserError, match="trains on two views per image"):
        model, method = _build(), _method(BYOL)
        method.attach_model(_build)
        method(model, torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), torch.arange(4), 0)


def test_probe_loss_leaves_unlabeled_images_out():
    logits, labels = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]]), torch.tensor([0, -1, 1])
    expected = (F.cross_entropy(logits[:1], labels[:1]) + F.cross_entropy(logits[2:], labels[2:])) / 2
    assert float(probe_loss_of(logits, labels)) == pytest.approx(float(expected))
    assert float(probe_loss_of(logits, torch.full((3,), -1))) == 0.0
