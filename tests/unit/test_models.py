"""Model zoo: shapes, exact parameter counts, config files, normalisation, checkpoints."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from sat.errors import UserError
from sat.models import (
    MLP,
    Normalize,
    PreActResNet,
    ResNet,
    SmallCNN,
    WideResNet,
    count_parameters,
    with_normalization,
)

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"

# Every class at a width small enough to run a forward pass on CPU in milliseconds.
SMALL = {
    "resnet18": (ResNet, dict(depth=18, width=4)),
    "resnet34": (ResNet, dict(depth=34, width=2)),
    "preact18": (PreActResNet, dict(depth=18, width=4)),
    "wrn10": (WideResNet, dict(depth=10, width=1, dropout=0.3)),
    "cnn": (SmallCNN, dict(width=4)),
    "mlp": (MLP, dict(width=8, depth=2)),
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 1, 8, 8)])
def test_output_shape(name, shape):
    cls, args = SMALL[name]
    model = cls(num_classes=7, input_shape=shape[1:], **args)
    out = model(torch.rand(shape))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "cls, args, expected",
    [
        (ResNet, dict(depth=18, width=64), 11_173_962),
        (ResNet, dict(depth=34, width=64), 21_282_122),
        (PreActResNet, dict(depth=18, width=64), 11_171_146),
        (WideResNet, dict(depth=28, width=10), 36_479_194),
        (WideResNet, dict(depth=34, width=10), 46_160_474),
    ],
)
def test_reference_parameter_counts(cls, args, expected):
    # On the meta device: shapes only, no memory or init cost for the 46M-parameter WRN.
    with torch.device("meta"):
        model = cls(num_classes=10, input_shape=(3, 32, 32), **args)
    assert count_parameters(model) == expected


@pytest.mark.parametrize("name", SMALL)
def test_parameters_grow_with_width(name):
    cls, args = SMALL[name]
    counts = [count_parameters(cls(10, (3, 32, 32), **{**args, "width": w})) for w in (1, 2, 4)]
    assert counts[0] < counts[1] < counts[2]


@pytest.mark.parametrize(
    "cls, args, value",
    [
        (ResNet, dict(depth=20), "^depth=20"),
        (PreActResNet, dict(depth=50), "^depth=50"),
        (WideResNet, dict(depth=30), "^depth=30"),
        (WideResNet, dict(depth=4), "^depth=4"),
        (MLP, dict(depth=0), "^depth=0"),
        (MLP, dict(width=0), "^width=0"),
        (SmallCNN, dict(width=-3), "^width=-3"),
    ],
)
def test_bad_arguments_raise_user_error(cls, args, value):
    with pytest.raises(UserError, match=value) as info:
        cls(10, (3, 32, 32), **args)
    assert "\n" not in str(info.value)


def test_resnet_depth_error_lists_accepted_values():
    with pytest.raises(UserError, match="accepted: 18, 34"):
        ResNet(10, (3, 32, 32), depth=20)


@pytest.mark.parametrize("name", SMALL)
def test_channels_last_and_autocast(name):
    cls, args = SMALL[name]
    model = cls(10, (3, 16, 16), **args).eval().to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 16, 16).to(memory_format=torch.channels_last)
    with torch.no_grad():
        reference = model(x.contiguous())
        assert torch.allclose(model(x), reference, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_normalize_per_channel():
    norm = Normalize([0.5, 0.25, 0.0], [0.5, 2.0, 0.1])
    x = torch.rand(4, 3, 5, 5)
    expected = torch.stack([(x[:, 0] - 0.5) / 0.5, (x[:, 1] - 0.25) / 2.0, x[:, 2] / 0.1], dim=1)
    assert torch.allclose(norm(x), expected)
    assert set(norm.state_dict()) == {"mean", "std"}  # saved with checkpoints


def test_normalize_rejects_bad_statistics():
    with pytest.raises(UserError):
        Normalize([0.5, 0.5], [0.5])
    with pytest.raises(UserError):
        Normalize([0.5], [0.0])


@pytest.mark.parametrize("name", ["resnet18", "wrn10", "cnn"])
def test_state_dict_round_trip(name):
    cls, args = SMALL[name]
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    model = with_normalization(cls(10, (3, 16, 16), **args), mean, std)
    model(torch.rand(8, 3, 16, 16))  # a train-mode pass moves the BN running statistics
    torch.manual_seed(1)  # a different init for the fresh copy
    fresh = with_normalization(cls(10, (3, 16, 16), **args), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    fresh.load_state_dict(model.state_dict())
    x = torch.rand(3, 3, 16, 16)
    model.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))
    assert torch.equal(fresh[0].mean.flatten(), torch.tensor(mean))


def test_config_files_name_constructor_arguments():
    files = sorted(CONF.glob("*.yaml"))
    expected = {"resnet18", "resnet34", "preact_resnet18", "wrn28_10", "wrn34_10", "cnn", "mlp"}
    assert expected <= {f.stem for f in files}
    for f in files:
        assert f.read_text().startswith("# "), f"{f.name}: missing the one-line comment"
        cfg = OmegaConf.to_container(OmegaConf.load(f))
        params = inspect.signature(get_class(cfg.pop("_target_"))).parameters
        assert "width" in cfg, f.name
        assert set(cfg) <= set(params) - {"num_classes", "input_shape"}, f.name


@pytest.mark.parametrize("name", ["resnet18", "preact_resnet18", "wrn28_10", "cnn", "mlp"])
def test_config_instantiates(name):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    cfg.width = 2  # same construction path as a run, at a size that is cheap to build
    model = instantiate(cfg, num_classes=5, input_shape=(1, 8, 8))
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 5)
