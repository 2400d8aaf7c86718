"""Attacks: eps-ball/[0,1] invariants, no parameter gradients, effectiveness on an
undefended model, restarts, eps parsing, configs and the AutoAttack adapter."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from sat.attacks import CW, FGSM, PGD, AutoAttack, margin_loss, parse_eps, robust_accuracy
from sat.errors import UserError

CONF = Path(__file__).resolve().parents[2] / "conf" / "attack"
HAS_AUTOATTACK = any(importlib.util.find_spec(m) is not None for m in ("autoattack", "pyautoattack"))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models gain nothing from threads, and on a busy 2-core box OpenMP
    # contention made these tests ~50x slower.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_convnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()


@pytest.fixture(scope="module")
def digits():
    """A linear softmax classifier trained on sklearn's 8x8 digits (inputs in [0,1]):
    ~95% test accuracy and no defence. Returns (model, x_test, y_test)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target)
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=gen)
    train, test = perm[:1400], perm[1400:]
    torch.manual_seed(0)
    model = nn.Linear(64, 10)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):  # full batch, well under a second
        opt.zero_grad()
        F.cross_entropy(model(x[train]), y[train]).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval(), x[test], y[test]


ATTACKS = {
    "fgsm": lambda eps: FGSM(eps),
    "pgd": lambda eps: PGD(eps, step_size=eps / 4 + 1e-3, steps=5),
    "pgd-no-start": lambda eps: PGD(eps, step_size=0.01, steps=3, random_start=False),
    "pgd-margin-restarts": lambda eps: PGD(eps, step_size=0.01, steps=3, restarts=3, loss="margin"),
    "cw": lambda eps: CW(eps, steps=5),
}


@pytest.mark.parametrize("name", ATTACKS)
@pytest.mark.parametrize("seed", range(4))
def test_iterates_stay_in_eps_ball_and_unit_box(name, seed):
    gen = torch.Generator().manual_seed(seed)
    eps = [0.0, 1 / 255, 0.031, 0.3][seed]
    x = torch.rand(6, 3, 8, 8, generator=gen)
    x[0] = 0.0  # pixels on the box's faces: the ball must be cut by [0,1]
    x[1] = 1.0
    y = torch.randint(0, 5, (6,), generator=gen)
    torch.manual_seed(seed)
    x_adv = ATTACKS[name](eps)(tiny_convnet(seed), x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@pytest.mark.parametrize("name", ATTACKS)
def test_attacks_populate_no_parameter_grads(name):
    model = tiny_convnet()
    x, y = torch.rand(4, 3, 8, 8), torch.randint(0, 5, (4,))
    ATTACKS[name](0.031)(model, x, y)
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_attacks_expose_eps():
    assert FGSM("8/255").eps == pytest.approx(8 / 255)
    assert PGD(0.031).eps == 0.031 and CW(eps="2/255").eps == pytest.approx(2 / 255)
    assert PGD(0.031, step_size="2/255").step_size == pytest.approx(2 / 255)


def test_margin_loss_by_hand():
    logits = torch.tensor([[1.0, 3.0, 2.0], [5.0, -1.0, 0.0]])
    assert margin_loss(logits, torch.tensor([1, 0])).tolist() == [2.0 - 3.0, 0.0 - 5.0]


def test_robust_accuracy_le_natural_and_records_eps(digits):
    model, x, y = digits
    model.train()  # robust_accuracy switches to eval and back
    res = robust_accuracy(model, PGD(0.031, 0.007, 10), x, y, batch_size=100)
    assert model.training
    assert set(res) == {"natural", "robust", "eps"} and res["eps"] == 0.031
    assert res["natural"] > 0.9
    assert 0.0 <= res["robust"] <= res["natural"]


def test_large_eps_pgd_breaks_undefended_model(digits):
    model, x, y = digits
    for attack in (PGD(0.3, 0.03, 20), CW(0.3, 0.03, 20)):
        res = robust_accuracy(model, attack, x, y, batch_size=128)
        assert res["natural"] > 0.9 and res["robust"] < 0.05, (attack, res)
    # Stronger attacks hurt more: FGSM at a moderate eps leaves more than PGD does.
    fgsm = robust_accuracy(model, FGSM(0.1), x, y)["robust"]
    pgd = robust_accuracy(model, PGD(0.1, 0.01, 20), x, y)["robust"]
    assert pgd <= fgsm < 0.9


def test_restarts_keep_first_fooling_example_else_last(monkeypatch):
    # logits = x, label 0: a sample is fooled iff x[:, 1] > x[:, 0].
    model = nn.Identity()
    x, y = torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)
    runs = iter(
        [
            torch.tensor([[0.0, 0.1], [0.2, 0.0], [0.3, 0.0]]),  # sample 0 fooled
            torch.tensor([[0.0, 0.4], [0.0, 0.5], [0.6, 0.0]]),  # sample 1 fooled
            torch.tensor([[0.7, 0.0], [0.0, 0.8], [0.9, 0.0]]),  # sample 2 never
        ]
    )
    attack = PGD(1.0, 0.1, 1, restarts=3)
    monkeypatch.setattr(attack, "_run_once", lambda m, xx, yy: next(runs))
    out = attack(model, x, y)
    assert torch.equal(out, torch.tensor([[0.0, 0.1], [0.0, 0.5], [0.9, 0.0]]))


@pytest.mark.parametrize(
    "value, expected",
    [(0.031, 0.031), (0, 0.0), (1, 1.0), ("8/255", 8 / 255), (" 8 / 255 ", 8 / 255), ("0.031", 0.031), ("0", 0.0)],
)
def test_parse_eps_accepts(value, expected):
    assert parse_eps(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["abc", "8/0", "1/2/3", "", "8/", None, [0.1], True])
def test_parse_eps_rejects_non_numbers(value):
    with pytest.raises(UserError, match=r"is not a number; accepted: a float in \[0,1\] like 0.031 or a fraction"):
        parse_eps(value)


@pytest.mark.parametrize("value", [-0.1, 2, 8, "8", "300/255", "nan", "inf"])
def test_parse_eps_rejects_out_of_range(value):
    with pytest.raises(UserError, match="out of range"):
        parse_eps(value)


def test_parse_eps_message_is_one_line():
    with pytest.raises(UserError) as err:
        parse_eps("abc")
    assert str(err.value) == (
        "eps='abc' is not a number; accepted: a float in [0,1] like 0.031 or a fraction like 8/255"
    )


@pytest.mark.parametrize(
    "kwargs", [dict(steps=-1), dict(restarts=0), dict(loss="hinge"), dict(step_size="x"), dict(eps=-1)]
)
def test_pgd_validates_args(kwargs):
    with pytest.raises(UserError):
        PGD(**kwargs)


@pytest.mark.parametrize(
    "name, cls, eps, steps",
    [("fgsm", FGSM, 0.031, 1), ("pgd", PGD, 0.031, 10), ("pgd20", PGD, 0.031, 20), ("cw", CW, 0.031, 20)],
)
def test_configs_instantiate(name, cls, eps, steps):
    attack = instantiate(OmegaConf.load(CONF / f"{name}.yaml"))
    assert type(attack) is cls and attack.eps == eps and attack.steps == steps
    pixel = instantiate(OmegaConf.load(CONF / f"{name}.yaml"), eps="8/255")
    assert pixel.eps == pytest.approx(8 / 255)


def test_pgd20_config_is_the_papers_evaluation():
    a = instantiate(OmegaConf.load(CONF / "pgd20.yaml"))
    assert (a.eps, a.step_size, a.steps, a.random_start, a.loss) == (0.031, 0.003, 20, True, "ce")
    assert instantiate(OmegaConf.load(CONF / "cw.yaml")).loss == "margin"


def test_autoattack_missing_package_is_a_user_error(monkeypatch):
    for module in ("autoattack", "pyautoattack"):
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(UserError) as err:
        AutoAttack(0.031)
    assert str(err.value) == "AutoAttack needs the optional extra: pip install -e '.[robust]'"


@pytest.mark.parametrize(
    "kwargs",
    [dict(norm="Linf2"), dict(version="fast"), dict(version="custom"), dict(attacks=["apgd-ce"]),
     dict(version="custom", attacks=["pgd"]), dict(eps="abc")],
)  # fmt: skip
def test_autoattack_validates_args(kwargs, monkeypatch):
    monkeypatch.setattr("sat.attacks.autoattack._autoattack_class", lambda: object)
    with pytest.raises(UserError):
        AutoAttack(**kwargs)


@pytest.mark.skipif(not HAS_AUTOATTACK, reason="autoattack not installed (pip install -e '.[robust]')")
def test_autoattack_custom_run_reports_each_attack(digits):
    model, x, y = digits
    x, y = x[:16], y[:16]
    attack = instantiate(OmegaConf.load(CONF / "autoattack.yaml"), version="custom", attacks=["apgd-ce", "apgd-t"])
    res = attack.evaluate(model, x, y, batch_size=8)
    assert set(res) == {"natural", "apgd-ce", "apgd-t", "robust", "eps"} and res["eps"] == 0.031
    # Attacks run in sequence on the points still robust: accuracy only goes down.
    assert res["natural"] >= res["apgd-ce"] >= res["apgd-t"] == res["robust"]
    x_adv = attack(model, x, y)
    assert (x_adv - x).abs().max() <= 0.031 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.skipif(not HAS_AUTOATTACK, reason="autoattack not installed (pip install -e '.[robust]')")
def test_autoattack_standard_large_eps(digits):
    # At eps 0.3 APGD-CE breaks every point, so the slow later attacks have nothing to do.
    model, x, y = digits
    res = AutoAttack(eps=0.3).evaluate(model, x[:8], y[:8])
    assert list(res) == ["natural", "apgd-ce", "apgd-t", "fab-t", "square", "robust", "eps"]
    assert res["natural"] > 0.5 and res["robust"] == 0.0
