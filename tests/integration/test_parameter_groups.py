"""The optimizer's parameter groups (sat/tasks/train/objects.py): one group as before for a
method without groups of its own, the self-supervised online probe with its own lr and no
weight decay, torchvision's norm/bias weight decay where asked for."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sat.config.schema import TrainerSettings
from sat.ssl import backbone
from sat.tasks.train.objects import build_objects, parameter_groups

SMALL = ["dataset=synthetic", "model=cnn", "model.width=4", "device=cpu", "paths.output_dir=/tmp/x"]


def _build(compose_cfg, *overrides: str):
    cfg = compose_cfg("train", [*SMALL, *overrides])
    return build_objects(cfg, TrainerSettings.from_config(cfg.trainer), torch.device("cpu"))


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def test_a_method_without_groups_trains_everything_in_one_group(compose_cfg):
    objects = _build(compose_cfg, "method=sat", "trainer.epochs=100")
    (group,) = objects.optimizer.param_groups  # as before: old checkpoints' optimizer state still loads
    assert _ids(group["params"]) == _ids(objects.model.parameters())
    assert (group["lr"], group["weight_decay"]) == (0.1, 5e-4)


def test_the_online_probe_trains_with_its_own_lr_and_no_weight_decay(compose_cfg):
    objects = _build(compose_cfg, "method=byol", "augment=ssl_cifar", "optimizer.lr=0.06", "method.probe_lr=0.2")
    rest, probe = objects.optimizer.param_groups
    classifier = backbone.classifier(objects.model)
    assert probe["name"] == "probe" and _ids(probe["params"]) == _ids(classifier.parameters())
    assert (probe["lr"], probe["weight_decay"]) == (0.2, 0.0) and (rest["lr"], rest["weight_decay"]) == (0.06, 5e-4)
    backbone_and_heads = [*objects.model.parameters(), *objects.method.parameters()]
    assert _ids(rest["params"]) == _ids(backbone_and_heads) - _ids(classifier.parameters())
    objects.scheduler.step()  # the schedule moves each group from its own rate
    assert probe["lr"] / 0.2 == pytest.approx(rest["lr"] / 0.06)
    same = _build(compose_cfg, "method=byol", "augment=ssl_cifar", "optimizer.lr=0.06", "method.probe_lr=null")
    assert same.optimizer.param_groups[1]["lr"] == 0.06  # null: the optimizer's
    # both null: one group, as the runs before probe_lr trained (their checkpoints continue with these two values)
    old = _build(compose_cfg, "method=byol", "augment=ssl_cifar", "method.probe_lr=null", "method.probe_weight_decay=null")
    assert len(old.optimizer.param_groups) == 1


def test_norm_and_bias_weight_decay_as_torchvision(compose_cfg):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    method = nn.Module()
    method.parameter_groups = lambda model: []  # a method without groups of its own
    rest, norm = parameter_groups(model, method, norm_weight_decay=0.0)
    assert _ids(norm["params"]) == _ids(model[1].parameters()) and norm["weight_decay"] == 0.0
    assert _ids(rest["params"]) == _ids([model[0].weight, model[0].bias, model[3].weight, model[3].bias])
    rest, bias, norm = parameter_groups(model, method, norm_weight_decay=0.0, bias_weight_decay=1e-5)
    assert _ids(bias["params"]) == _ids([model[0].bias, model[1].bias, model[3].bias])  # a norm's bias is a bias
    assert _ids(norm["params"]) == {id(model[1].weight)} and _ids(rest["params"]) == {id(model[0].weight),
                                                                                      id(model[3].weight)}
    objects = _build(compose_cfg, "method=ce", "trainer.norm_weight_decay=0", "trainer.bias_weight_decay=0")
    assert [g.get("name") for g in objects.optimizer.param_groups] == [None, "bias", "norm"]
