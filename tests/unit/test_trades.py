"""TRADES / TRADES+SAT: the loss against a hand computation, the attack against the
reference loop, train/eval modes, state, validation and configs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from sat.errors import UserError
from sat.methods import TRADES, CrossEntropy, SelfAdaptiveTraining

CONF = Path(__file__).resolve().parents[2] / "conf" / "method"
K, B = 4, 6


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()  # tiny models: threads only add contention
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class ModeRecorder(nn.Module):
    """A linear model that records whether each forward ran in train mode."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(12, K)
        self.modes: list[bool] = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.fc(x.flatten(1))


def batch(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = 0.1 + 0.8 * torch.rand(B, 3, 4, generator=gen)  # away from 0/1: the noisy start needs no clamping
    return x, torch.randint(0, K, (B,), generator=gen), torch.arange(B)


def kl_by_hand(logits: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    p, log_p, log_q = logits.softmax(1), logits.log_softmax(1), logits_adv.log_softmax(1)
    return (p * (log_p - log_q)).sum()


def test_loss_matches_hand_computation_with_fixed_x_adv():
    model, (x, y, idx) = ModeRecorder(), batch()
    method = TRADES(beta=6.0, epsilon=0.031, steps=0)
    torch.manual_seed(1)
    loss, logits = method(model.train(), x, y, idx, epoch=0)
    torch.manual_seed(1)
    x_adv = x + 0.001 * torch.randn_like(x)  # steps=0: x_adv is the noisy start
    ref_model = copy.deepcopy(model)
    clean, adv = ref_model(x), ref_model(x_adv)
    expected = F.cross_entropy(clean, y) + 6.0 * kl_by_hand(clean, adv) / B
    assert torch.allclose(logits, clean) and torch.allclose(loss, expected, atol=1e-6)
    # Gradients flow through both the clean and the adversarial probabilities.
    loss.backward()
    expected.backward()
    for p, q in zip(model.parameters(), ref_model.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)


def reference_x_adv(model, x, step_size, epsilon, steps):
    """The published TRADES loop: clean forward recomputed at every step."""
    x_adv = x.detach() + 0.001 * torch.randn_like(x)
    for _ in range(steps):
        x_adv.requires_grad_()
        loss_kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1), reduction="sum")
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.clamp(torch.min(torch.max(x_adv, x - epsilon), x + epsilon), 0.0, 1.0)
    return x_adv


def test_attack_matches_reference_loop():
    model, (x, _, _) = ModeRecorder().eval(), batch(1)
    method = TRADES(epsilon=0.05, step_size=0.01, steps=7)
    torch.manual_seed(2)
    ours = method.perturb(model, x)
    torch.manual_seed(2)
    ref = reference_x_adv(model, x, 0.01, 0.05, 7)
    assert torch.equal(ours, ref)
    assert (ours - x).abs().max() <= 0.05 + 1e-6 and 0 <= ours.min() and ours.max() <= 1
    assert not torch.equal(ours, x)


def test_modes_clean_probs_once_and_no_param_grads():
    model, (x, y, idx) = ModeRecorder(), batch()
    method = TRADES(steps=3)
    model.train()
    loss, _ = method(model, x, y, idx, epoch=0)
    # One clean forward plus 3 attack steps in eval mode, then clean + adversarial in train mode.
    assert model.modes == [False] * 4 + [True] * 2 and model.training
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    model.eval()
    method(model, x, y, idx, epoch=0)
    assert not model.training  # the caller's mode is restored, whatever it was


def test_trades_sat_switches_loss_at_start_epoch():
    model, (x, y, idx) = ModeRecorder(), batch()
    method = TRADES(natural=SelfAdaptiveTraining(alpha=0.9, start_epoch=2), beta=2.0, steps=0)
    method.setup(y, K)
    onehot = F.one_hot(y, K).float()

    def run(epoch):
        torch.manual_seed(3)
        loss, logits = method(model, x, y, idx, epoch)
        torch.manual_seed(3)
        adv = model(x + 0.001 * torch.randn_like(x))
        return loss, logits, 2.0 * kl_by_hand(logits, adv) / B

    loss, logits, robust = run(epoch=1)  # before start_epoch: CE, targets untouched
    assert torch.allclose(loss, F.cross_entropy(logits, y) + robust, atol=1e-6)
    assert torch.equal(method.soft_labels(), onehot)

    loss, logits, robust = run(epoch=2)  # from start_epoch: the SAT loss
    t = 0.9 * onehot + 0.1 * logits.detach().softmax(1)
    w = t.max(1).values
    w = w * B / w.sum()
    sat = (w * -(t * logits.log_softmax(1)).sum(1)).mean()
    assert torch.allclose(loss, sat + robust, atol=1e-6)
    assert torch.allclose(method.soft_labels(), t)
    assert not torch.allclose(loss, F.cross_entropy(logits, y) + robust)


def test_natural_state_is_in_state_dict():
    method = TRADES(natural=SelfAdaptiveTraining())
    method.setup(torch.tensor([0, 2, 1]), 3)
    state = method.state_dict()
    assert "natural.targets" in state and state["natural.targets"].shape == (3, 3)
    assert method.soft_labels() is method.natural.targets
    assert TRADES().soft_labels() is None


def test_hparams_include_natural_prefixed():
    hp = TRADES(natural=SelfAdaptiveTraining(alpha=0.9, start_epoch=70)).hparams()
    assert {k: hp[k] for k in ("beta", "epsilon", "step_size", "steps")} == {
        "beta": 6.0, "epsilon": 0.031, "step_size": 0.007, "steps": 10,
    }  # fmt: skip
    assert hp["natural.alpha"] == 0.9 and hp["natural.start_epoch"] == 70
    assert isinstance(TRADES().natural, CrossEntropy) and "natural.label_smoothing" in TRADES().hparams()


@pytest.mark.parametrize(
    "kwargs", [dict(beta=-1.0), dict(beta=float("nan")), dict(epsilon=-0.1), dict(epsilon="abc"),
               dict(step_size=-0.01), dict(steps=-1), dict(steps=1.5), dict(steps="ten"), dict(steps=float("nan")),
               dict(beta="6")],
)  # fmt: skip
def test_validates_args(kwargs):
    with pytest.raises(UserError):
        TRADES(**kwargs)


def test_epsilon_accepts_pixel_fraction():
    assert TRADES(epsilon="8/255", step_size="2/255").epsilon == pytest.approx(8 / 255)


def test_bf16_autocast_loss_is_float32():
    model, (x, y, idx) = ModeRecorder(), batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logits = TRADES(steps=2)(model.train(), x, y, idx, epoch=0)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()


def test_configs_instantiate():
    trades = instantiate(OmegaConf.load(CONF / "trades.yaml"))
    assert isinstance(trades, TRADES) and isinstance(trades.natural, CrossEntropy)
    assert (trades.beta, trades.epsilon, trades.step_size, trades.steps) == (6.0, 0.031, 0.007, 10)
    sat = instantiate(OmegaConf.load(CONF / "trades_sat.yaml"))
    assert isinstance(sat.natural, SelfAdaptiveTraining)
    assert (sat.natural.alpha, sat.natural.start_epoch, sat.beta) == (0.9, 70, 6.0)
