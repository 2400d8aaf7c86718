"""The end-of-run box points at the chosen tracker's own view of the run, and
TensorBoard's HParams entry holds the test accuracy at the best-validation epoch."""

from __future__ import annotations

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
])
def test_the_box_points_at_the_tracker(tmp_path, capsys, logger, key, pointer):
    run = tmp_path / "run"
    summary = sat.train([*TINY, f"logger={logger}"], output_dir=run)
    lines = box(capsys.readouterr().out)
    assert lines["run folder"] == summary["output_dir"]
    shown = {k: v for k, v in lines.items() if k in ("tensorboard", "metrics", "wandb")}
    assert shown == ({key: pointer.format(run=summary["output_dir"])} if key else {})


def test_hparams_hold_the_best_validation_epoch_s_test_accuracy(tmp_path):
    summary = sat.train([*TINY, "logger=tensorboard"], output_dir=tmp_path)
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    (event,) = acc.Scalars("at_best_val/test/acc")  # logged with the HParams entry, once
    assert event.value == pytest.approx(summary["at_best_val"]["test/acc"])
    assert "at_best_val/epoch" in acc.Tags()["scalars"] and "final/test/acc" in acc.Tags()["scalars"]
