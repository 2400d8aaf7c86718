"""The end-of-run box points at the chosen tracker's own view of the run, and
TensorBoard's HParams entry holds the test accuracy at the best-validation epoch."""

from __future__ import annotations

import csv
import re

import pytest
from conftest import TINY
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import sat


def box(out: str) -> dict[str, str]:
    """The key/value lines between the box's ===== rules."""
    inside = out.split("=" * 60)[1].strip().splitlines()
    return dict(re.split(r"\s{2,}", line, maxsplit=1) for line in inside)  # key padded, two spaces, value


@pytest.mark.parametrize("logger,key,pointer", [
    ("tensorboard", "tensorboard", "tensorboard --logdir {run}"),
    ("csv", "metrics", "{run}/metrics.csv (and hparams.csv)"),
    ("none", None, None),
    ("[tensorboard,csv]", ("tensorboard", "metrics"), ("tensorboard --logdir {run}", "{run}/metrics.csv (and hparams.csv)")),
])
def test_the_box_points_at_the_tracker(tmp_path, capsys, logger, key, pointer):
    run = tmp_path / "run"
    summary = sat.train([*TINY, f"logger={logger}"], output_dir=run)
    lines = box(capsys.readouterr().out)
    assert lines["run folder"] == summary["output_dir"]
    shown = {k: v for k, v in lines.items() if k in ("tensorboard", "metrics", "wandb")}
    keys, pointers = (key, pointer) if isinstance(key, tuple) else ((key,), (pointer,)) if key else ((), ())
    assert shown == {k: p.format(run=summary["output_dir"]) for k, p in zip(keys, pointers)}


def test_hparams_hold_the_best_validation_epoch_s_test_accuracy(tmp_path):
    summary = sat.train([*TINY, "logger=tensorboard"], output_dir=tmp_path)
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    (event,) = acc.Scalars("at_best_val/test/acc")  # logged with the HParams entry, once
    assert event.value == pytest.approx(summary["at_best_val"]["test/acc"])
    assert "at_best_val/epoch" in acc.Tags()["scalars"] and "final/test/acc" in acc.Tags()["scalars"]


def test_several_loggers_at_once_each_write_every_epoch(tmp_path):
    """``logger=[tensorboard,csv]`` (Hydra's list selection of a group): both trackers,
    read back with TensorBoard's own reader and the csv module."""
    summary = sat.train([*TINY, "logger=[tensorboard,csv]"], output_dir=tmp_path)
    assert summary["loggers"] == ["tensorboard", "csv"]
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    tb = [(e.step, e.value) for e in acc.Scalars("test/acc")]
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2] == [step for step, _ in tb]
    assert [float(r["test/acc"]) for r in rows] == pytest.approx([value for _, value in tb])
    assert float(rows[-1]["test/acc"]) == pytest.approx(summary["final"]["test/acc"])
    (entry,) = acc.Scalars("at_best_val/test/acc")  # the HParams entry went to both
    with open(tmp_path / "hparams.csv", newline="") as f:
        assert entry.value == pytest.approx(float(dict(csv.reader(f))["at_best_val/test/acc"]))


def test_a_logger_setting_is_named_under_its_tracker(tmp_path):
    with pytest.raises(sat.errors.UserError) as e:
        sat.train([*TINY, "logger=[tensorboard,csv]", "+logger.csv.flush_secs=10"], output_dir=tmp_path)
    assert str(e.value).startswith("logger.csv.flush_secs is not a key of logger.csv")
