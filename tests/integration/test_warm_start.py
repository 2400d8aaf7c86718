"""Warm start: a checkpoint's weights into a new model (the same architecture, or the
layers that fit with strict=false), never its input normalisation; another
architecture is a one-line error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sat.errors import UserError
from sat.models.normalize import with_normalization
from sat.run.checkpoint import save_checkpoint
from sat.tasks.train.warm_start import warm_start


def net(classes: int = 3, hidden: int = 8) -> nn.Module:
    return with_normalization(nn.Sequential(nn.Flatten(), nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, classes)),
                              [0.5], [0.25])


def checkpoint_of(model: nn.Module, folder) -> str:
    state = {"epoch": 7, "model": model.state_dict(), "config": {}, "noise_sha256": "0" * 64,
             "optimizer": {"state": {"x": 1}}, "method": {"targets": torch.ones(2, 3)}}
    save_checkpoint(state, folder, ["last"])
    return str(folder / "last.pt")


def test_weights_are_copied_and_normalisation_kept(tmp_path):
    torch.manual_seed(0)
    trained = net()
    path = checkpoint_of(trained, tmp_path)
    fresh = with_normalization(net()[1], [0.1], [0.9])  # another dataset's statistics
    record = warm_start(fresh, path)
    for key, value in trained.state_dict().items():
        if key.startswith("1."):
            assert torch.equal(fresh.state_dict()[key], value), key
    assert fresh[0].mean.flatten().tolist() == pytest.approx([0.1])  # not the checkpoint's 0.5
    assert record == {"checkpoint": path, "epoch": 7, "strict": True, "loaded": 4, "not_loaded": []}


def test_a_changed_head_loads_with_strict_false_only(tmp_path):
    torch.manual_seed(0)
    path = checkpoint_of(net(classes=3), tmp_path)
    with pytest.raises(UserError, match=r"another architecture \(first difference: 1.3.bias, \(3,\) in the checkpoint, "
                                        r"\(5,\) here\).*init_from_strict=false"):
        warm_start(net(classes=5), path)
    five = net(classes=5)
    record = warm_start(five, path, strict=False)
    assert record["loaded"] == 2 and record["not_loaded"] == ["1.3.bias", "1.3.weight"]


def test_another_architecture_is_a_one_line_error(tmp_path):
    path = checkpoint_of(net(), tmp_path)
    other = with_normalization(nn.Sequential(nn.Conv2d(1, 2, 3)), [0.0], [1.0])
    for strict in (True, False):  # nothing fits: even strict=false refuses
        with pytest.raises(UserError, match="another architecture") as e:
            warm_start(other, path, strict=strict)
        assert "\n" not in str(e.value)


def test_init_from_starts_a_new_run_from_the_weights_only(compose_cfg, tmp_path):
    """In-process through sat.tasks.train: another method and learning rate, the first
    run's weights; epoch, optimizer and soft targets start fresh."""
    from conftest import TINY

    from sat.tasks.train import run as train

    first = tmp_path / "first"
    train(compose_cfg("train", [*TINY, "method=sat", "method.start_epoch=0", "logger=none",
                                f"paths.output_dir={first}"]))
    trained = torch.load(first / "checkpoints/last.pt", weights_only=True)
    second = tmp_path / "second"
    summary = train(compose_cfg("train", [*TINY, "trainer.checkpoint_every=1", "method=sat", "optimizer.lr=0.0",
                                          "optimizer.momentum=0.0", "logger=none", f"init_from={first}/checkpoints/last.pt",
                                          f"paths.output_dir={second}"]))
    state = torch.load(second / "checkpoints/epoch_1.pt", weights_only=True)
    assert summary["init_from"]["checkpoint"] == f"{first}/checkpoints/last.pt" and summary["init_from"]["epoch"] == 2
    # counted from 0, not from the checkpoint's 2: two epochs of its own, the first one checkpointed
    assert summary["epochs_done"] == 2 and state["epoch"] == 1
    # the first run's momentum buffers are not carried over (this run has momentum 0: no optimizer state)
    assert trained["optimizer"]["state"] and state["optimizer"]["state"] == {}
    for key, value in trained["model"].items():  # lr 0: the weights are the first run's, unchanged
        if value.is_floating_point() and "running" not in key:
            assert torch.equal(state["model"][key], value), key
    # SAT's soft targets start one-hot (start_epoch 1 in TINY: no update in epoch 0), not the first run's
    targets = state["method"]["targets"]
    assert torch.equal(targets.max(1).values, torch.ones(len(targets)))
    assert not torch.equal(targets, trained["method"]["targets"])
    with pytest.raises(UserError, match="another architecture"):
        train(compose_cfg("train", [*TINY, "model=mlp", "logger=none", f"init_from={first}/checkpoints/last.pt",
                                    f"paths.output_dir={tmp_path / 'third'}"]))
