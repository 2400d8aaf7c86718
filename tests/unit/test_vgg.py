"""VGG-BN for small images: shapes, the reference's parameter count, bad values, config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from sat.errors import UserError
from sat.models import count_parameters, with_normalization
from sat.models.vgg import VGG

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("depth", [11, 13, 16, 19])
@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 1, 8, 8), (2, 3, 7, 5)])
def test_output_shape(depth, shape):
    model = VGG(num_classes=11, input_shape=shape[1:], depth=depth, width=2)
    out = model(torch.rand(shape))
    assert out.shape == (2, 11) and torch.isfinite(out).all()


def _vgg16_count(width: int, num_classes: int, pixels_left: int = 1) -> int:
    """By hand: 13 convs (3x3, with bias) each followed by BN (2 per channel), then
    Linear(8w * pixels, 8w), BN1d(8w), Linear(8w, K)."""
    stages = [(1, 2), (2, 2), (4, 3), (8, 3), (8, 3)]
    total, c_in = 0, 3
    for factor, convs in stages:
        c = factor * width
        for _ in range(convs):
            total += 9 * c_in * c + c + 2 * c
            c_in = c
    hidden = 8 * width
    return total + (c_in * pixels_left * hidden + hidden) + 2 * hidden + (hidden * num_classes + num_classes)


@pytest.mark.parametrize("num_classes, size, pixels_left", [(10, 32, 1), (11, 32, 1), (11, 64, 4)])
def test_vgg16_parameter_count_is_the_references(num_classes, size, pixels_left):
    with torch.device("meta"):
        model = VGG(num_classes, (3, size, size), depth=16, width=64)
    assert count_parameters(model) == _vgg16_count(64, num_classes, pixels_left)
    if (num_classes, size) == (10, 32):
        assert count_parameters(model) == 14_991_946  # the SAT-selective-cls vgg16_bn, counted there


def test_layer_order_and_dropout_follow_the_reference():
    feats = list(VGG(10, (3, 32, 32), depth=16, width=2).features)
    assert [type(m) for m in feats[:4]] == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d, nn.Dropout2d]
    drops = [m.p for m in feats if isinstance(m, nn.Dropout2d)]
    assert drops == [0.3] + [0.4] * 7 + [0.5]
    assert sum(isinstance(m, nn.MaxPool2d) for m in feats) == 5


def test_pools_stop_at_one_pixel():
    assert sum(isinstance(m, nn.MaxPool2d) for m in VGG(10, (1, 8, 8), width=2).features) == 3
    assert sum(isinstance(m, nn.MaxPool2d) for m in VGG(10, (1, 1, 1), width=2).features) == 0


@pytest.mark.parametrize("args, value", [(dict(depth=15), "^depth=15"), (dict(width=0), "^width=0"),
                                         (dict(width=2.5), "^width=2.5")])
def test_bad_arguments_raise_user_error(args, value):
    with pytest.raises(UserError, match=value) as info:
        VGG(10, (3, 32, 32), **args)
    assert "\n" not in str(info.value) and ("accepted: 11, 13, 16, 19" in str(info.value) or "depth" not in args)


def test_parameters_grow_with_width():
    counts = [count_parameters(VGG(10, (3, 32, 32), width=w)) for w in (1, 2, 4)]
    assert counts[0] < counts[1] < counts[2]


def test_channels_last_and_autocast():
    model = VGG(10, (3, 16, 16), width=2).eval().to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 16, 16).to(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.allclose(model(x), model(x.contiguous()), atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_state_dict_round_trip_with_normalization():
    model = with_normalization(VGG(11, (3, 16, 16), width=2), (0.4, 0.4, 0.4), (0.2, 0.2, 0.2))
    model(torch.rand(8, 3, 16, 16))  # moves the BN running statistics
    fresh = with_normalization(VGG(11, (3, 16, 16), width=2), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    fresh.load_state_dict(model.state_dict())
    x = torch.rand(3, 3, 16, 16)
    model.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))


def test_config_instantiates_with_the_abstain_output():
    cfg = OmegaConf.load(CONF / "vgg16_bn.yaml")
    assert (CONF / "vgg16_bn.yaml").read_text().startswith("# ") and (cfg.depth, cfg.width) == (16, 64)
    cfg.width = 2  # same construction path as a run, at a size that is cheap to build
    model = instantiate(cfg, num_classes=10 + 1, input_shape=(1, 8, 8)).eval()
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 11)
