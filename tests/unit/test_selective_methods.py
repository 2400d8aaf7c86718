"""SAT-selective and Deep Gamblers losses against hand computation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sat.errors import UserError
from sat.methods.selective import DeepGamblers, SelfAdaptiveSelective, abstain_targets, gambler_loss

CONF = Path(__file__).resolve().parents[2] / "conf" / "method"

# Two samples, K = 3 classes plus abstain (the last column).
LOGITS = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.5, 1.5, 0.0, -0.3]], dtype=torch.float64)
LABELS = torch.tensor([0, 2])
INDEX = torch.tensor([3, 1])


def softmax(row):
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def make_sat(momentum=0.8, pretrain=2):
    m = SelfAdaptiveSelective(momentum=momentum, pretrain=pretrain)
    m.setup(torch.tensor([1, 2, 0, 0]), num_classes=3)  # four training samples
    return m


def test_abstain_target_puts_t_y_on_the_label_and_the_rest_on_abstain():
    t = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], dtype=torch.float64)
    target = abstain_targets(t, torch.tensor([1, 2]))
    expected = torch.tensor([[0.0, 0.2, 0.0, 0.8], [0.0, 0.0, 0.6, 0.4]], dtype=torch.float64)
    assert torch.allclose(target, expected, rtol=0, atol=1e-15)


def test_warm_up_is_cross_entropy_on_the_first_k_outputs_and_targets_stay_one_hot():
    m = make_sat()
    loss = m.loss(LOGITS, LABELS, INDEX, epoch=1)
    by_hand = -(math.log(softmax(LOGITS[0, :3].tolist())[0]) + math.log(softmax(LOGITS[1, :3].tolist())[2])) / 2
    assert loss.item() == pytest.approx(by_hand, rel=1e-12)
    assert m.soft_labels().tolist() == [[0, 1, 0], [0, 0, 1], [1, 0, 0], [1, 0, 0]]


def test_sat_selective_loss_matches_hand_computation():
    m = make_sat(momentum=0.8, pretrain=2)
    m.targets = m.targets.double()  # float64 throughout, to compare at 1e-12
    loss = m.loss(LOGITS, LABELS, INDEX, epoch=2)
    old = [[1, 0, 0], [0, 0, 1]]  # the targets of samples 3 and 1
    expected, new = 0.0, []
    for i, y in enumerate(LABELS.tolist()):
        p_k = softmax(LOGITS[i, :3].tolist())  # the targets track the first K outputs only
        t = [0.8 * o + 0.2 * p for o, p in zip(old[i], p_k)]
        new.append(t)
        p = softmax(LOGITS[i].tolist())  # the loss is over all K + 1
        expected += -(t[y] * math.log(p[y]) + (1 - t[y]) * math.log(p[3])) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert m.soft_labels()[3].tolist() == pytest.approx(new[0], rel=1e-12)
    assert m.soft_labels()[1].tolist() == pytest.approx(new[1], rel=1e-12)
    assert m.soft_labels()[0].tolist() == [0, 1, 0]  # not in the batch: unchanged


def test_targets_are_detached_and_abstain_output_gets_gradient():
    m = make_sat(pretrain=0)
    logits = LOGITS.float().clone().requires_grad_(True)
    m.loss(logits, LABELS, INDEX, epoch=0).backward()
    assert not m.soft_labels().requires_grad
    assert (logits.grad[:, 3].abs() > 0).all()


def test_warm_up_leaves_abstain_output_without_gradient():
    m = make_sat(pretrain=5)
    logits = LOGITS.float().clone().requires_grad_(True)
    m.loss(logits, LABELS, INDEX, epoch=4).backward()
    assert (logits.grad[:, 3] == 0).all() and (logits.grad[:, :3].abs() > 0).any()


def test_forward_hands_back_class_logits_only():
    m = make_sat()
    loss, logits = m(lambda x: x, LOGITS, LABELS, INDEX, 0)
    assert logits.shape == (2, 3) and torch.equal(logits, LOGITS[:, :3]) and loss.dim() == 0


def test_model_without_the_abstain_output_is_refused():
    m = make_sat()
    with pytest.raises(ValueError, match="extra_outputs"):
        m.loss(LOGITS[:, :3], LABELS, INDEX, 0)


def test_gambler_loss_matches_hand_computation():
    o = 2.2
    expected = 0.0
    for i, y in enumerate(LABELS.tolist()):
        p = softmax(LOGITS[i].tolist())
        expected += -math.log(p[y] + p[3] / o) / 2
    assert gambler_loss(LOGITS, LABELS, o).item() == pytest.approx(expected, rel=1e-12)
    m = DeepGamblers(reward=o, pretrain=3)
    m.setup(torch.tensor([0, 1, 2, 0]), 3)
    assert m.loss(LOGITS, LABELS, INDEX, epoch=3).item() == pytest.approx(expected, rel=1e-12)
    warm = m.loss(LOGITS, LABELS, INDEX, epoch=2)  # warm-up: CE over the first K
    assert warm.item() == pytest.approx(F.cross_entropy(LOGITS[:, :3], LABELS).item(), rel=1e-12)


def test_gambler_loss_stays_finite_where_both_probabilities_underflow():
    logits = torch.tensor([[100.0, -100.0, -100.0, -100.0]])  # p_y and p_abstain ~ e^-200
    loss = gambler_loss(logits, torch.tensor([1]), 2.2)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(200 - math.log(1 + 1 / 2.2), rel=1e-5)


@pytest.mark.parametrize(
    "build, bad",
    [
        (lambda: SelfAdaptiveSelective(momentum=1.0), "^momentum=1.0"),
        (lambda: SelfAdaptiveSelective(pretrain=-1), "^pretrain=-1"),
        (lambda: SelfAdaptiveSelective(pretrain=1.5), "^pretrain=1.5"),
        (lambda: DeepGamblers(reward=1.0), "^reward=1.0"),
        (lambda: DeepGamblers(reward=12.0).setup(torch.tensor([0]), 10), "^reward=12.0"),
    ],
)
def test_bad_hyper_parameters_name_the_value(build, bad):
    with pytest.raises(UserError, match=bad) as info:
        build()
    assert "\n" not in str(info.value)


def test_soft_targets_round_trip_through_state_dict():
    m = make_sat(pretrain=0)
    m.loss(LOGITS.float(), LABELS, INDEX, epoch=0)
    fresh = make_sat(pretrain=0)
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh.soft_labels(), m.soft_labels()) and "targets" in m.state_dict()


def test_extra_outputs_and_hparams():
    assert SelfAdaptiveSelective.extra_outputs == 1 and DeepGamblers.extra_outputs == 1
    assert make_sat().hparams() == {"momentum": 0.8, "pretrain": 2, "extra_outputs": 1}
    assert DeepGamblers().hparams() == {"reward": 2.2, "pretrain": 0, "extra_outputs": 1}
    assert make_sat(pretrain=7).phase_starts() == {"pretrain": 7}


@pytest.mark.parametrize("name, cls", [("sat_selective", SelfAdaptiveSelective), ("gambler", DeepGamblers)])
def test_config_files_build_the_released_defaults(name, cls):
    text = (CONF / f"{name}.yaml").read_text()
    assert text.startswith("# ")
    method = instantiate(OmegaConf.create(text))
    assert type(method) is cls
    if cls is SelfAdaptiveSelective:
        assert (method.momentum, method.pretrain) == (0.9, 150)
    else:
        assert (method.reward, method.pretrain) == (2.2, 0)


@pytest.mark.parametrize("method", [SelfAdaptiveSelective(pretrain=0), DeepGamblers(pretrain=0)])
def test_losses_are_float32_under_bf16_autocast(method):
    method.setup(torch.tensor([1, 2, 0, 0]), 3)
    logits = LOGITS.to(torch.bfloat16).requires_grad_(True)
    loss = method.loss(logits, LABELS, INDEX, epoch=0)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert logits.grad.dtype == torch.bfloat16
