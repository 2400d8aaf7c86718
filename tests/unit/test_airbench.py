"""The CPU preset's network (sat.models.airbench): shapes, [0, 1] inputs through the zoo's normalisation,
exact parameter counts, its config node, bad arguments, and that it learns."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sat.errors import UserError
from sat.models import AirbenchNet, count_parameters, with_normalization
from sat.tasks.build import build_model

CONF = Path(__file__).resolve().parents[2] / "conf" / "model" / "airbench.yaml"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 8, 8), (3, 17, 23)])
def test_logits_and_features_for_any_image_size(shape):
    model = AirbenchNet(7, shape, width=4)
    x = torch.rand(2, *shape)
    assert model(x).shape == (2, 7) and torch.isfinite(model(x)).all()
    assert model.forward_features(x).shape == (2, model.num_features) and model.num_features == 16  # 4 x 4


def test_parameter_counts():
    # stem 3->24 (2x2, bias) + groups 24->32->64->128 (two 3x3 convs and two BNs each) + linear 128->10
    assert count_parameters(AirbenchNet(10, (3, 32, 32))) == 295_106
    # airbench94's widths 64/256/256
    assert count_parameters(AirbenchNet(10, (3, 32, 32), width=64, multipliers=[1, 4, 4])) == 1_972_802
    counts = [count_parameters(AirbenchNet(10, (3, 32, 32), width=w)) for w in (8, 16, 32)]
    assert counts[0] < counts[1] < counts[2]


def test_config_node_builds_the_run_s_model_on_unit_inputs():
    """The YAML node through the run's own builder: the net behind the zoo's Normalize, so it takes [0, 1] images."""
    cfg = OmegaConf.load(CONF)
    assert set(cfg) == {"_target_", "width", "multipliers"}
    model = build_model(cfg, 10, (3, 32, 32))
    norm, net = model
    assert isinstance(net, AirbenchNet) and net.num_features == 128
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    norm.set_stats(mean, std)
    x = torch.rand(4, 3, 32, 32)  # images in [0, 1]
    model.eval()
    with torch.no_grad():
        expected = net((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
        assert torch.allclose(model(x), expected, atol=1e-5)


def test_channels_last_and_bf16_autocast_agree_with_fp32():
    model = with_normalization(AirbenchNet(10, (3, 32, 32), width=8), (0.5,) * 3, (0.25,) * 3).eval()
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        last = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x.contiguous(memory_format=torch.channels_last)).float()
    assert torch.allclose(last, reference, atol=1e-4)
    assert (low - reference).abs().max() < 0.1 * reference.abs().max()  # bf16: ~3 significant digits


@pytest.mark.parametrize("args, match", [
    (dict(width=0), "^width=0"),
    (dict(multipliers=[]), r"^multipliers=\[\]"),
    (dict(multipliers=[1, 0]), r"^multipliers=\[1, 0\]"),
    (dict(multipliers="124"), "^multipliers='124'"),
])
def test_bad_arguments_are_one_line_user_errors(args, match):
    with pytest.raises(UserError, match=match) as info:
        AirbenchNet(10, (3, 32, 32), **args)
    assert "\n" not in str(info.value)


def test_instantiate_accepts_the_yaml_list_of_multipliers():
    model = instantiate(OmegaConf.create({"_target_": "sat.models.airbench.AirbenchNet", "width": 2,
                                          "multipliers": [1, 2]}), num_classes=3, input_shape=(3, 8, 8))
    assert model.num_features == 4


def test_fits_a_small_batch():
    """SGD steps drive the loss on 16 fixed random images near zero: gradients reach every layer."""
    model = AirbenchNet(10, (3, 8, 8), width=8)
    x, y = torch.rand(16, 3, 8, 8), torch.randint(10, (16,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    first = None
    for _ in range(60):
        loss = F.cross_entropy(model(x), y)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1 * first
