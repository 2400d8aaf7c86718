"""The selective-classification presets compose with the released defaults, per method."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sat.methods.selective import DeepGamblers, SelfAdaptiveSelective

# preset -> {method: warm-up epochs} (SAT-selective-cls scripts and train.py defaults)
PRETRAIN = {
    "selective_cifar10": {"sat_selective": 150, "gambler": 100},
    "selective_svhn": {"sat_selective": 0, "gambler": 50},
    "selective_digits": {"sat_selective": 20, "gambler": 20},
}


@pytest.mark.parametrize("experiment", sorted(PRETRAIN))
@pytest.mark.parametrize("method", ["sat_selective", "gambler", "ce"])
def test_presets_compose_for_every_method(compose_cfg, experiment, method):
    cfg = compose_cfg("train", [f"experiment={experiment}", f"method={method}", "paths.output_dir=/tmp/x"])
    OmegaConf.to_container(cfg, resolve=True)
    assert cfg.name == experiment
    built = instantiate(cfg.method)
    if method == "ce":
        assert built.extra_outputs == 0 and "pretrain" not in cfg.method  # the tuning files stay out
    else:
        assert built.pretrain == PRETRAIN[experiment][method] and built.extra_outputs == 1
        assert isinstance(built, SelfAdaptiveSelective if method == "sat_selective" else DeepGamblers)
        assert built.pretrain < cfg.trainer.epochs  # the abstention loss does get trained


@pytest.mark.parametrize("experiment", ["selective_cifar10", "selective_svhn"])
def test_released_training_schedule(compose_cfg, experiment):
    cfg = compose_cfg("train", [f"experiment={experiment}", "paths.output_dir=/tmp/x"])
    assert cfg.model._target_ == "sat.models.vgg.VGG" and (cfg.model.depth, cfg.model.width) == (16, 64)
    assert (cfg.trainer.epochs, cfg.trainer.batch_size) == (300, 128)
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.1, 0.9, 5e-4)
    assert cfg.dataset.val_size == 0  # the reference trains on the whole training set
    assert cfg.method.momentum == 0.9 and cfg.augment.padding == 4
    assert cfg.augment.flip is (experiment == "selective_cifar10")  # digits are not mirror-symmetric
    # lr 0.1 halved after every 25 epochs: the reference's schedule [25, 50, ..., 275] x 0.5
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optimizer.lr)
    scheduler = instantiate(cfg.scheduler)(opt)
    lrs = []
    for _ in range(cfg.trainer.epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    expected = [0.1 * 0.5 ** sum(epoch >= m for m in range(25, 300, 25)) for epoch in range(300)]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_digits_preset_builds_a_model_with_the_abstain_output(compose_cfg):
    cfg = compose_cfg("train", ["experiment=selective_digits", "paths.output_dir=/tmp/x"])
    method = instantiate(cfg.method)
    data = instantiate(cfg.dataset)
    model = instantiate(cfg.model, num_classes=data.num_classes + method.extra_outputs, input_shape=data.input_shape)
    assert model(torch.rand(2, *data.input_shape)).shape == (2, 11)
