"""The real-image CPU presets (experiment=cifar10_cpu, ssl_cifar10_cpu) composed through the real config tree,
and the CPU's bf16 + channels_last choice they rely on."""

from __future__ import annotations

import pytest
import torch

from sat.config.schema import TrainerSettings
from sat.tasks.train.job import setup_torch


def test_noisy_label_preset_composes_to_the_cpu_recipe(compose_cfg):
    cfg = compose_cfg("train", ["experiment=cifar10_cpu", "paths.output_dir=/tmp/x"])
    assert cfg.model._target_ == "sat.models.airbench.AirbenchNet"
    assert cfg.dataset.name == "cifar10" and cfg.dataset.num_train <= 15000
    assert cfg.trainer.num_threads == 1 and cfg.trainer.precision == "bf16"
    assert cfg.method._target_ == "sat.methods.sat.SelfAdaptiveTraining"
    assert 0 < cfg.method.start_epoch < cfg.trainer.epochs  # method_tuning/cifar10_cpu-sat.yaml
    ce = compose_cfg("train", ["experiment=cifar10_cpu", "method=ce", "noise.rate=0.4", "paths.output_dir=/tmp/x"])
    assert ce.method._target_ == "sat.methods.ce.CrossEntropy" and ce.noise.rate == 0.4


@pytest.mark.parametrize("method", ["ssl_sat", "byol", "simsiam", "simclr"])
def test_ssl_preset_composes_with_heads_sized_for_the_small_net(compose_cfg, method):
    cfg = compose_cfg("train", ["experiment=ssl_cifar10_cpu", f"method={method}", "paths.output_dir=/tmp/x"])
    assert cfg.model._target_ == "sat.models.airbench.AirbenchNet" and cfg.augment._target_.endswith("TwoViews")
    assert cfg.noise.rate == 0.0 and cfg.dataset.num_train <= 15000
    assert cfg.method.projector_hidden_dim < 4096  # method_tuning/ssl_cifar10_cpu-<method>.yaml, not ResNet-18's


@pytest.mark.parametrize("precision, expected", [("bf16", True), ("fp32", False), ("auto", False)])
def test_channels_last_on_the_cpu_only_with_bf16(compose_cfg, precision, expected):
    """oneDNN's bf16 convolutions are fastest in NHWC; fp32 CPU runs keep NCHW (their results stay as they were)."""
    trainer = dict(compose_cfg("train", ["paths.output_dir=/tmp/x"]).trainer, precision=precision)
    device, amp_dtype, channels_last = setup_torch(TrainerSettings.from_config(trainer), "cpu", 0)
    assert device.type == "cpu" and channels_last is expected and (amp_dtype == torch.bfloat16) is expected
    off = TrainerSettings.from_config({**trainer, "channels_last": False})
    assert setup_torch(off, "cpu", 0)[2] is False
