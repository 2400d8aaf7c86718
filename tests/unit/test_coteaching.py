"""Co-teaching: the forget-rate schedule, the small-loss exchange between the two
networks (checked by hand on a tiny MLP) and the peer-network hook."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from sat.errors import UserError
from sat.methods.coteaching import CoTeaching, forget_rate_schedule

CONF = Path(__file__).resolve().parents[2] / "conf" / "method"


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def attached(**kw) -> tuple[nn.Module, CoTeaching]:
    torch.manual_seed(0)
    model, method = mlp(), CoTeaching(**{"forget_rate": 0.5, **kw})
    method.attach_model(mlp)
    return model, method


def test_forget_rate_schedule_is_the_reference_linear_ramp():
    # the authors' rate_schedule: linspace(0, 0.4 ** 1, 10) for epochs 0..9, then 0.4
    ramp = [0.4 * e / 9 for e in range(10)]
    assert [forget_rate_schedule(e, 0.4, 10, 1.0) for e in range(10)] == pytest.approx(ramp)
    assert forget_rate_schedule(10, 0.4, 10, 1.0) == forget_rate_schedule(150, 0.4, 10, 1.0) == 0.4
    assert forget_rate_schedule(9, 0.4, 10, 2.0) == pytest.approx(0.16)  # ramps to 0.4 ** 2, as the code does
    assert forget_rate_schedule(0, 0.4, 0, 1.0) == 0.4  # no ramp
    assert forget_rate_schedule(0, 0.4, 1, 1.0) == 0.0


def test_each_network_trains_on_the_small_loss_samples_its_peer_picks():
    model, method = attached(num_gradual=0)  # forget rate 0.5 from the start: keep 4 of 8
    x, y = torch.randn(8, 4, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    loss, logits = method(model, x, y, torch.arange(8), epoch=0)

    # by hand, in float64: rank each network's per-sample CE, keep the 4 smallest
    with torch.no_grad():
        ce = F.cross_entropy(model(x).double(), y, reduction="none").tolist()
        peer_ce = F.cross_entropy(method.peer(x).double(), y, reduction="none").tolist()
    mine = sorted(range(8), key=lambda i: ce[i])[:4]
    peers = sorted(range(8), key=lambda i: peer_ce[i])[:4]
    assert set(mine) != set(peers)  # the two nets disagree, so the exchange is visible
    expected = sum(ce[i] for i in peers) / 4 + sum(peer_ce[i] for i in mine) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert torch.equal(logits, model(x))

    # the model's gradient comes from the peer's picks alone, and vice versa
    loss.backward()
    ref_model, ref_peer = mlp(), mlp()
    ref_model.load_state_dict(model.state_dict())
    ref_peer.load_state_dict(method.peer.state_dict())
    F.cross_entropy(ref_model(x[peers]), y[peers]).backward()
    F.cross_entropy(ref_peer(x[mine]), y[mine]).backward()
    for a, b in zip(list(model.parameters()) + list(method.parameters()),
                    list(ref_model.parameters()) + list(ref_peer.parameters())):
        assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_no_forgetting_at_epoch_zero_is_plain_cross_entropy_for_both():
    model, method = attached()
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    loss, _ = method(model, x, y, torch.arange(6), epoch=0)
    with torch.no_grad():
        expected = F.cross_entropy(model(x), y) + F.cross_entropy(method.peer(x), y)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_one_optimizer_over_model_and_method_parameters_trains_both_nets():
    model, method = attached()
    opt = torch.optim.SGD(list(model.parameters()) + list(method.parameters()), lr=0.1)
    before = [p.detach().clone() for p in method.parameters()] + [p.detach().clone() for p in model.parameters()]
    loss, _ = method(model, torch.randn(8, 4), torch.randint(0, 3, (8,)), torch.arange(8), epoch=3)
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = list(method.parameters()) + list(model.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after))
    assert any(k.startswith("peer.") for k in method.state_dict())  # the peer is checkpointed with the method


def test_peer_follows_the_model_train_eval_mode():
    model, method = attached()
    model.eval()
    method(model, torch.randn(2, 4), torch.tensor([0, 1]), torch.arange(2), epoch=0)
    assert not method.peer.training


def test_a_tiny_batch_keeps_at_least_one_sample():
    model, method = attached(forget_rate=0.9, num_gradual=0)
    loss, _ = method(model, torch.randn(1, 4), torch.tensor([2]), torch.arange(1), epoch=5)
    assert torch.isfinite(loss)


def test_without_a_peer_it_says_what_to_call():
    with pytest.raises(RuntimeError, match="attach_model"):
        CoTeaching(forget_rate=0.2)(mlp(), torch.randn(2, 4), torch.tensor([0, 1]), torch.arange(2), 0)


# the library names its argument (the task layer puts the config path, method., in front)
@pytest.mark.parametrize("kwargs,bad", [({"forget_rate": 1.0}, r"^forget_rate=1\.0"),
                                        ({"forget_rate": None}, r"^forget_rate=null"),
                                        ({"forget_rate": 0.2, "num_gradual": -1}, r"^num_gradual=-1"),
                                        ({"forget_rate": 0.2, "exponent": 0}, r"^exponent=0")])
def test_bad_hyper_parameters_name_the_value(kwargs, bad):
    with pytest.raises(UserError, match=bad):
        CoTeaching(**kwargs)


def test_config_takes_the_forget_rate_from_the_noise_rate():
    from hydra.utils import instantiate

    node = OmegaConf.load(CONF / "coteaching.yaml")
    assert set(node) - {"_target_"} == set(inspect.signature(CoTeaching).parameters)
    cfg = OmegaConf.create({"noise": {"rate": 0.4}, "method": node})
    assert instantiate(cfg.method).hparams() == {"forget_rate": 0.4, "num_gradual": 10, "exponent": 1.0}
    with pytest.raises(Exception, match="forget_rate=null"):  # a noise without a rate (CIFAR-N)
        instantiate(OmegaConf.create({"noise": {"label": "worse"}, "method": node}).method)
