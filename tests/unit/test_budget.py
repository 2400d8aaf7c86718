"""The memory check's activation estimate, counted by hand on small networks, and its
refusal: the figures, a batch size that fits and the device's preset."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sat.errors import UserError
from sat.models import ResNet
from sat.run.budget import model_memory
from sat.tasks import budget

F32 = 4


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))


def conv_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(256, 5))


def test_training_counts_what_backward_keeps_once_per_storage():
    params, per_sample = model_memory(mlp, (10,))
    assert params == 10 * 20 + 20 + 20 * 5 + 5
    # kept for backward: the first layer's input (10), ReLU's output (20, also the second
    # layer's input: one storage), the logits and their logsumexp (5 + 1); then the float batch (10)
    assert per_sample == F32 * (10 + 20 + 5 + 1) + F32 * 10
    _, per_sample = model_memory(conv_net, (3, 8, 8))
    # conv input 3x8x8, BatchNorm input 4x8x8, ReLU output 4x8x8 (flattened: the same storage), logits 5 + 1
    assert per_sample == F32 * (192 + 256 + 256 + 6) + F32 * 192


def test_evaluation_counts_the_widest_layer():
    assert model_memory(mlp, (10,), training=False)[1] == F32 * (20 + 20)  # ReLU's input and output


def test_activations_grow_with_the_image_area():
    make = {size: (lambda s=size: ResNet(num_classes=10, input_shape=(3, s, s), depth=18, width=4)) for size in (32, 64)}
    small, large = (model_memory(make[s], (3, s, s))[1] for s in (32, 64))
    assert large == pytest.approx(4 * small, rel=0.01)


def test_a_refusal_names_the_figures_a_batch_that_fits_and_the_preset(monkeypatch):
    need = budget.estimate("train", build_model=conv_net, input_shape=(3, 8, 8), batch_size=1000)
    per_sample = need.activations_per_sample
    have = need.parts["networks"] + 100 * per_sample  # room for 100 samples' activations
    monkeypatch.setattr(budget, "available_bytes", lambda device: have)
    with pytest.raises(UserError) as e:
        budget.check_memory("train", device=torch.device("cpu"), build_model=conv_net, input_shape=(3, 8, 8),
                            batch_size=1000, preset="on a CPU, the preset made for it: python train.py experiment=x")
    message = str(e.value)
    assert "activations at batch 1000 of 3x8x8" in message
    assert "trainer.batch_size<=50," in message  # half of what the lower bound lets fit: peaks reach 2x of it
    assert message.endswith("on a CPU, the preset made for it: python train.py experiment=x")
    budget.check_memory("train", device=torch.device("cpu"), build_model=conv_net, input_shape=(3, 8, 8),
                        batch_size=100)  # fits: no error


def test_bf16_halves_the_activations():
    full = budget.estimate("train", build_model=conv_net, input_shape=(3, 8, 8), batch_size=64)
    half = budget.estimate("train", build_model=conv_net, input_shape=(3, 8, 8), batch_size=64, half_precision=True)
    assert half.activations_per_sample == full.activations_per_sample // 2
    assert half.parts["networks"] == full.parts["networks"]
