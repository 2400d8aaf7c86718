"""ResNet-50: torchvision's architecture and parameter names in the model-zoo contract;
ImageNet weights only from a local file, never downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sat.errors import UserError
from sat.models import count_parameters, with_normalization
from sat.models.resnet50 import ResNet50, hub_files

CONF = Path(__file__).resolve().parents[2] / "conf" / "model" / "resnet50.yaml"


def test_same_parameters_and_names_as_torchvision():
    with torch.device("meta"):
        ours = ResNet50(1000, (3, 224, 224))
        theirs = torchvision.models.resnet50()
    assert count_parameters(ours) == count_parameters(theirs) == 25_557_032
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}


def test_forward_on_a_tiny_input_with_any_width_and_channels():
    torch.manual_seed(0)
    model = ResNet50(7, (1, 32, 32), width=4)
    out = model(torch.rand(2, 1, 32, 32))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    counts = [count_parameters(ResNet50(10, (3, 32, 32), width=w)) for w in (2, 4, 8)]
    assert counts[0] < counts[1] < counts[2]


@pytest.mark.parametrize("args, value", [(dict(width=0), "^width=0"), (dict(pretrained="yes"), "^pretrained='yes'")])
def test_bad_arguments_raise_user_error(args, value):
    with pytest.raises(UserError, match=value):
        ResNet50(10, (3, 32, 32), **args)


def test_pretrained_without_weights_says_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(UserError) as info:
        ResNet50(14, (3, 224, 224), pretrained=True)
    msg = str(info.value)
    assert "\n" not in msg and hub_files()[0] in msg and "weights_path=" in msg and str(tmp_path / "hub") in msg
    with pytest.raises(UserError, match="^weights_path='/nowhere.pth' is not a file"):
        ResNet50(14, (3, 224, 224), pretrained=True, weights_path="/nowhere.pth")
    with pytest.raises(UserError, match="needs width=64"):
        ResNet50(14, (3, 224, 224), width=8, pretrained=True)


def test_pretrained_loads_a_local_torchvision_file_with_a_new_classifier(tmp_path, monkeypatch):
    torch.manual_seed(1)
    source = torchvision.models.resnet50()  # stands in for the ImageNet weights
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(source.state_dict(), cache / hub_files()[1])
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    model = ResNet50(14, (3, 64, 64), pretrained=True)  # found in the hub cache
    assert torch.equal(model.layer3[2].conv2.weight, source.layer3[2].conv2.weight)
    assert torch.equal(model.bn1.running_var, source.bn1.running_var) and model.fc.out_features == 14
    wrapped = tmp_path / "wrapped.pth"  # a training checkpoint of DataParallel keys
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, wrapped)
    same = ResNet50(1000, (3, 64, 64), pretrained=True, weights_path=str(wrapped))
    assert torch.equal(same.fc.weight, source.fc.weight)
    foreign = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(1)}, foreign)
    with pytest.raises(UserError, match="is not a torchvision ResNet-50 state dict"):
        ResNet50(14, (3, 64, 64), pretrained=True, weights_path=str(foreign))


def test_config_instantiates_with_normalisation_inside():
    cfg = OmegaConf.load(CONF)
    assert CONF.read_text().startswith("# ") and cfg.width == 64 and cfg.pretrained is False
    cfg.width = 2
    model = with_normalization(instantiate(cfg, num_classes=5, input_shape=(3, 32, 32)), (0.485, 0.456, 0.406),
                               (0.229, 0.224, 0.225))
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 5)
