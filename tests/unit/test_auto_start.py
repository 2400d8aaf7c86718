"""start_epoch=auto: the detector on constructed curves, its patience / min_delta /
bounds as documented, resuming, and the prediction-change signal."""

from __future__ import annotations

import inspect
import io
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from sat.errors import UserError
from sat.methods.auto_start import AutoStartEpoch, PredictionChanges

CONF = Path(__file__).resolve().parents[2] / "conf" / "auto_start"


def feed(detector: AutoStartEpoch, curve: list[float], signal: str = "val/acc", first: int = 1) -> int | None:
    """Feed ``curve[k]`` as the metrics of epoch ``first + k``; the epoch it fired at, if any."""
    for k, value in enumerate(curve):
        if detector.update(first + k, {signal: value, "train/loss": 1.0}):
            return first + k
    return None


def rise_then_plateau(plateau_from: int = 10, epochs: int = 40, wobble: float = 0.0005) -> list[float]:
    """0.05 per epoch up to 0.8 at ``plateau_from``, then flat within +-wobble (epochs 1..)."""
    return [0.3 + 0.05 * min(e, plateau_from) + (wobble if e % 2 else -wobble) * (e > plateau_from)
            for e in range(1, epochs + 1)]


def test_rising_then_plateauing_accuracy_starts_near_the_plateau():
    d = AutoStartEpoch()  # val/acc, patience 5, min_delta 0.001, 3-epoch mean
    fired = feed(d, rise_then_plateau(plateau_from=10))
    # the 3-epoch mean still rises through epoch 12 (it averages in the climb), then stays flat
    assert d.best_epoch == 12 and fired == d.start_epoch == 17
    assert d.reason.startswith("SAT starts at epoch 17: val/acc (mean of the last 3 epochs) has not risen by more "
                               "than 0.001") and "(epoch 12) for 5 epochs (patience 5)" in d.reason
    assert d.update(18, {"val/acc": 0.1}) and d.start_epoch == 17  # decided once, then fixed


def test_one_bad_epoch_does_not_trigger_but_a_patience_of_one_would():
    curve = [0.3 + 0.02 * e for e in range(1, 31)]
    curve[11] -= 0.1  # epoch 12 dips
    assert feed(AutoStartEpoch(smoothing=1), curve) is None
    assert feed(AutoStartEpoch(smoothing=3), curve) is None
    assert feed(AutoStartEpoch(smoothing=1, patience=1), curve) == 12


def test_patience_counts_epochs_since_the_best():
    curve = [0.5, 0.6, 0.7] + [0.69] * 10  # best at epoch 3
    for patience in (1, 2, 4):
        assert feed(AutoStartEpoch(patience=patience, smoothing=1), curve) == 3 + patience


def test_improvements_below_min_delta_count_as_a_plateau():
    climb = [0.3 + 0.05 * e for e in range(1, 11)]  # 0.8 at epoch 10
    creep = climb + [0.8 + 0.00015 * k for k in range(1, 21)]  # +0.00075 over the 5 epochs after the best
    assert feed(AutoStartEpoch(min_delta=0.001, smoothing=1), creep) == 15
    assert feed(AutoStartEpoch(min_delta=0.0, smoothing=1), creep) is None  # every creep is an improvement
    # min_delta is measured from the best, not from the previous epoch: a creep that adds up
    # to more than min_delta within the patience window is progress
    faster = climb + [0.8 + 0.0005 * k for k in range(1, 21)]
    assert feed(AutoStartEpoch(min_delta=0.001, smoothing=1), faster) is None


def test_min_mode_finds_the_minimum_of_prediction_changes_and_skips_nan():
    changes = [math.nan, 0.40, 0.25, 0.15, 0.10, 0.08, 0.09, 0.11, 0.14, 0.18, 0.22, 0.25]  # U-shaped, min at epoch 6
    d = AutoStartEpoch(signal="train/prediction_changes", mode="min", patience=3, smoothing=1)
    assert feed(d, changes, signal="train/prediction_changes") == 9 and d.best_epoch == 6
    assert "has not fallen by more than" in d.reason and d.values[0] == 0.40


def test_min_and_max_epoch_bound_the_choice():
    early = [0.8, 0.9] + [0.85] * 20  # best at epoch 2: would fire at 7
    assert feed(AutoStartEpoch(smoothing=1, min_epoch=12), early) == 12
    always_rising = [0.01 * e for e in range(1, 40)]
    d = AutoStartEpoch(smoothing=1, max_epoch=20)
    assert feed(d, always_rising) == 20 and "auto_start.max_epoch=20" in d.reason


def test_resume_from_state_dict_decides_as_an_uninterrupted_run():
    curve = rise_then_plateau()
    whole = AutoStartEpoch()
    feed(whole, curve)
    first = AutoStartEpoch()
    feed(first, curve[:14])
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)  # checkpoints load with weights_only=True
    buffer.seek(0)
    resumed = AutoStartEpoch()
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert feed(resumed, curve[14:], first=15) == whole.start_epoch and resumed.reason == whole.reason


def test_misuse_is_reported():
    with pytest.raises(UserError, match=r"^signal='val/acc' is not among the epoch's metrics \(train/loss\)"):
        AutoStartEpoch().update(1, {"train/loss": 1.0})
    d = AutoStartEpoch()
    d.update(3, {"val/acc": 0.5})
    with pytest.raises(ValueError, match="epochs must increase"):
        d.update(3, {"val/acc": 0.5})


@pytest.mark.parametrize("kwargs,bad", [({"mode": "up"}, r"^mode='up'"),
                                        ({"patience": 0}, r"^patience=0"),
                                        ({"min_delta": -0.1}, r"^min_delta=-0\.1"),
                                        ({"smoothing": 0}, r"^smoothing=0"),
                                        ({"min_epoch": 10, "max_epoch": 5}, r"^max_epoch=5 .*>= min_epoch")])
def test_bad_settings_name_the_value(kwargs, bad):
    with pytest.raises(UserError, match=bad):
        AutoStartEpoch(**kwargs)


def test_prediction_changes_by_hand():
    pc = PredictionChanges(4)
    pc.update(torch.tensor([2, 0]), torch.tensor([2, 0]))
    pc.update(torch.tensor([3, 1]), torch.tensor([0, 1]))
    assert math.isnan(pc.compute())  # first epoch: nothing to compare with
    pc.update(torch.tensor([1, 3]), torch.tensor([2, 0]))  # sample 1: 1 -> 2 (changed), 3: 0 -> 0
    pc.update(torch.tensor([0, 2]), torch.tensor([1, 2]))  # sample 0: 0 -> 1 (changed), 2: 2 -> 2
    assert pc.compute() == 0.5
    pc.update(torch.tensor([0]), torch.tensor([1]))  # a partial epoch: only the compared samples count
    assert pc.compute() == 0.0
    fresh = PredictionChanges(4)
    fresh.load_state_dict(pc.state_dict())
    fresh.update(torch.tensor([1]), torch.tensor([0]))
    assert fresh.compute() == 1.0


@pytest.mark.parametrize("name,signal,mode", [("val_acc", "val/acc", "max"),
                                              ("prediction_changes", "train/prediction_changes", "min")])
def test_presets_name_the_constructor_arguments(name, signal, mode):
    from hydra.utils import instantiate

    node = OmegaConf.load(CONF / f"{name}.yaml")
    assert set(node) - {"_target_"} == set(inspect.signature(AutoStartEpoch).parameters)
    d = instantiate(node)
    assert (d.signal, d.mode, d.patience, d.smoothing) == (signal, mode, 5, 3)
