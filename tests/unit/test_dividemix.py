"""DivideMix: the GMM co-divide, sharpening, label co-refinement, co-guessing and the
MixMatch loss against hand computations on tiny batches; a whole step replayed by hand;
the per-epoch hook with a fake ``predict``; state for exact resume; bad values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sat.data.views import two_views
from sat.errors import UserError
from sat.methods.dividemix import (
    DivideMix,
    clean_probability,
    co_guess,
    mixmatch_loss,
    refine_labels,
    sharpen,
)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def attached(**kw) -> tuple[nn.Module, DivideMix]:
    torch.manual_seed(0)
    model, method = mlp(), DivideMix(**{"warmup_epochs": 1, "rampup_epochs": 0, **kw})
    method.attach_model(mlp)
    method.setup(torch.tensor([0, 1, 2, 0, 1, 2]), 3)
    return model, method


def test_gmm_separates_a_bimodal_loss_vector():
    g = torch.Generator().manual_seed(0)
    losses = torch.cat([0.1 + 0.02 * torch.randn(80, generator=g), 2.0 + 0.2 * torch.randn(20, generator=g)])
    shuffle = torch.randperm(100, generator=g)
    clean = torch.empty(100)
    clean[shuffle] = clean_probability(losses[shuffle])  # the order of the samples does not matter
    assert (clean[:80] > 0.5).all() and (clean[80:] < 0.5).all()
    assert clean.dtype == torch.float32 and clean.shape == (100,)


def test_sharpen_by_hand():
    out = sharpen(torch.tensor([[0.6, 0.4], [0.5, 0.5]]), 0.5)
    assert out.tolist()[0] == pytest.approx([0.36 / 0.52, 0.16 / 0.52])
    assert out.tolist()[1] == pytest.approx([0.5, 0.5])


def test_label_co_refinement_and_co_guessing_by_hand():
    onehot = torch.tensor([[1.0, 0.0, 0.0]])
    own = torch.tensor([[0.2, 0.5, 0.3]])
    # w = 0.8: 0.8 * [1,0,0] + 0.2 * [0.2,0.5,0.3] = [0.84, 0.10, 0.06]; squared and renormalised (T 0.5)
    expected = torch.tensor([0.84 ** 2, 0.10 ** 2, 0.06 ** 2])
    assert refine_labels(onehot, own, torch.tensor([0.8]), 0.5)[0].tolist() == pytest.approx(
        (expected / expected.sum()).tolist())
    probs = [torch.tensor([[0.1, 0.6, 0.3]]), torch.tensor([[0.3, 0.4, 0.3]]),
             torch.tensor([[0.2, 0.5, 0.3]]), torch.tensor([[0.2, 0.5, 0.3]])]
    mean = torch.tensor([0.2, 0.5, 0.3])  # the mean of the four
    assert co_guess(probs, 0.5)[0].tolist() == pytest.approx((mean ** 2 / (mean ** 2).sum()).tolist())


def test_mixmatch_loss_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 3.0]], dtype=torch.float64)
    targets = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.0, 1.0, 0.0], [0.3, 0.3, 0.4]], dtype=torch.float64)
    labelled = torch.tensor([True, False, True, False])
    out = mixmatch_loss(logits, targets.float(), labelled, lambda_u=25.0)
    p = logits.softmax(1)
    ce = [-(targets[i] * p[i].log()).sum().item() for i in (0, 2)]
    se = [((p[i] - targets[i]) ** 2).sum().item() for i in (1, 3)]
    mean_p = p.mean(0)
    prior = sum((1 / 3) * torch.log((1 / 3) / mean_p[k]).item() for k in range(3))
    assert out["x"].item() == pytest.approx(sum(ce) / 2, rel=1e-5)
    assert out["u"].item() == pytest.approx(sum(se) / (2 * 3), rel=1e-5)
    assert out["prior"].item() == pytest.approx(prior, rel=1e-4, abs=1e-6)
    assert out["total"].item() == pytest.approx(sum(ce) / 2 + 25 * sum(se) / 6 + prior, rel=1e-5)
    # an all-labelled batch has no unlabelled term (no NaN from an empty mean)
    assert mixmatch_loss(logits.float(), targets.float(), torch.ones(4, dtype=torch.bool), 25.0)["u"].item() == 0


def test_a_step_is_mixmatch_on_the_other_networks_division():
    model, method = attached()
    # the model trains on the peer's division (row 1), the peer on the model's (row 0)
    method.clean_prob[0] = torch.tensor([0.9, 0.9, 0.9, 0.1, 0.1, 0.1])
    method.clean_prob[1] = torch.tensor([0.2, 0.7, 0.9, 0.6, 0.3, 0.1])
    g = torch.Generator().manual_seed(3)
    x1, x2 = torch.randn(4, 4, generator=g), torch.randn(4, 4, generator=g)
    y, index = torch.tensor([2, 0, 1, 1]), torch.tensor([5, 0, 3, 1])
    torch.manual_seed(7)
    loss, logits = method(model, (x1, x2), y, index, epoch=1)

    torch.manual_seed(7)  # replay the draws: lam then perm, for the model, then for the peer
    draws = []
    for _ in range(2):
        lam = float(torch.distributions.Beta(torch.tensor(4.0), torch.tensor(4.0)).sample())
        draws.append((max(lam, 1 - lam), torch.randperm(8)))
    with torch.no_grad():
        p = {name: [net(v).softmax(1) for v in (x1, x2)] for name, net in (("model", model), ("peer", method.peer))}
    onehot = F.one_hot(y, 3).float()
    expected = 0.0
    for (net, own, other, w), (lam, perm) in zip(
            ((model, p["model"], p["peer"], method.clean_prob[1][index]),
             (method.peer, p["peer"], p["model"], method.clean_prob[0][index])), draws):
        rows = []
        for i in range(4):
            if w[i] > 0.5:  # labelled: refined with the other network's clean probability
                t = w[i] * onehot[i] + (1 - w[i]) * (own[0][i] + own[1][i]) / 2
            else:  # unlabelled: co-guessed by both networks over both views
                t = (own[0][i] + own[1][i] + other[0][i] + other[1][i]) / 4
            rows.append(t ** 2 / (t ** 2).sum())
        targets = torch.stack(rows + rows)
        inputs = torch.cat([x1, x2])
        labelled = torch.cat([w > 0.5, w > 0.5])
        out = net(lam * inputs + (1 - lam) * inputs[perm]).log_softmax(1)
        mixed = lam * targets + (1 - lam) * targets[perm]
        lx = -(mixed[labelled] * out[labelled]).sum(1).mean()
        lu = ((out[~labelled].exp() - mixed[~labelled]) ** 2).mean()
        prior = (torch.full((3,), 1 / 3) * (torch.full((3,), 1 / 3).log() - out.exp().mean(0).log())).sum()
        expected = expected + lx + 25.0 * lu + prior
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(logits, model(x1))
    loss.backward()  # both networks get gradients from their own term
    assert all(q.grad is not None for q in [*model.parameters(), *method.peer.parameters()])


def test_warm_up_is_cross_entropy_on_both_networks():
    model, method = attached(warmup_epochs=2)
    x, y = torch.randn(6, 4, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0, 1, 2])
    loss, _ = method(model, x, y, torch.arange(6), epoch=1)
    expected = F.cross_entropy(model(x), y) + F.cross_entropy(method.peer(x), y)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_before_epoch_divides_each_network_by_its_own_losses():
    model, method = attached()
    labels = method.labels
    confident = torch.full((6, 3), -4.0)
    confident[torch.arange(6), labels] = 4.0  # low loss on every given label
    model_logits = confident.clone()
    model_logits[4:] = confident[[0, 1]]  # the model disagrees with samples 4 and 5: high loss
    peer_logits = confident.clone()
    peer_logits[0] = confident[1]
    fake = {id(model): model_logits, id(method.peer): peer_logits}
    seen = []

    def predict(network):
        seen.append(network)
        return fake[id(network)]

    assert method.before_epoch(0, model, predict) == {}  # still warming up: nothing computed
    assert seen == []
    metrics = method.before_epoch(1, model, predict)
    assert seen == [model, method.peer]
    assert (method.clean_prob[0] > 0.5).tolist() == [True, True, True, True, False, False]
    assert (method.clean_prob[1] > 0.5).tolist() == [False, True, True, True, True, True]
    assert metrics["method/labelled_model"] == pytest.approx(4 / 6)


def test_clean_probabilities_are_state_for_an_exact_resume():
    _, method = attached()
    method.clean_prob[1] = torch.linspace(0, 1, 6)
    _, fresh = attached()
    fresh.load_state_dict(method.state_dict())
    assert torch.equal(fresh.clean_prob, method.clean_prob)
    assert torch.equal(fresh.peer.state_dict()["0.weight"], method.peer.state_dict()["0.weight"])


def test_one_batch_is_both_views_and_three_views_are_refused():
    """DivideMix and the self-supervised methods take their views apart with the one
    ``two_views``: a single batch serves DivideMix as both, never an SSL method."""
    x = torch.zeros(2, 4)
    assert two_views(x, "method=dividemix", one_view_serves=True) == (x, x)
    assert two_views((x, x + 1), "method=dividemix")[1] is not x
    with pytest.raises(UserError, match="^method=dividemix needs 2 views per sample but the loader gives 3"):
        two_views((x, x, x), "method=dividemix", one_view_serves=True)
    with pytest.raises(UserError, match="trains on two views per image"):
        two_views(x, "a self-supervised method")


def test_bad_values_are_one_line_errors():
    with pytest.raises(UserError, match=r"^lambda_u=-1.0 is out of range; accepted: a number >= 0"):
        DivideMix(lambda_u=-1)
    with pytest.raises(UserError, match="p_threshold"):
        DivideMix(p_threshold=1.5)
    with pytest.raises(UserError, match="^warmup_epochs=10 >= trainer.epochs=10, so DivideMix's co-divide and "
                                       "MixMatch would never start"):
        DivideMix(warmup_epochs=10).plan(10)

    class TwoProcesses:
        world_size = 2

    with pytest.raises(UserError, match="not supported under DDP"):
        DivideMix().use_global_batch(TwoProcesses())
