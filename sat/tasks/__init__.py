"""The tasks behind the entry points; the only package that reads Hydra configs."""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig

from sat.tasks import settings
from sat.tasks.evaluation import evaluate
from sat.tasks.robustness import attack
from sat.tasks.training import train


def objective(summary: dict[str, Any], cfg: DictConfig) -> float:
    """The value ``train.py`` returns to a sweeper (``objective=``; NaN where the run
    has none, e.g. no validation split)."""
    section, metric = settings.objective(cfg)
    values = summary.get(section) or {}
    return float(values.get(metric, math.nan))


__all__ = ["attack", "evaluate", "objective", "train"]
