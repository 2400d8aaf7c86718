"""What the hyper-parameter search tests share: a tiny search's settings and reading a study back."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

# The quickstart with SAT from epoch 1, no logger; each test adds trainer.epochs (2: about a second a trial).
SMALL = ["experiment=quickstart", "hparams_search=quickstart", "method.start_epoch=1", "logger=none"]


def trials(study_dir: Path) -> list[optuna.trial.FrozenTrial]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{study_dir / 'optuna.db'}"
    (name,) = optuna.study.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage).trials


def run_overrides(run_dir: Path) -> dict[str, str]:
    lines = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    return dict(line.split("=", 1) for line in lines)


def assert_trial_is_its_run(trial: optuna.trial.FrozenTrial, study_dir: Path) -> None:
    """The trial's folder is trial-<number> in the study folder; it trained the trial's
    values and returned its last epoch's validation accuracy (never a test value)."""
    run_dir = Path(trial.user_attrs["run_dir"])
    assert run_dir == study_dir / f"trial-{trial.number}"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert trial.value == pytest.approx(summary["final"]["val/acc"])  # the searches' objective, final/val/acc
    given = run_overrides(run_dir)
    for key, value in trial.params.items():
        assert float(given[key]) == pytest.approx(value), key
