"""Model-wise double descent from a grouping: final error against ``model.width`` per
series (a series = the groups that differ only in width), and the interpolation
threshold. Errors in percent."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from sat.report.groups import Grouping, label
from sat.report.runs import Run, metric_value

WIDTH = "model.width"

# What ``model.width`` counts, per model option (it means different things by model).
WIDTH_UNITS = {
    "mlp": "hidden units", "cnn": "base channels", "resnet18": "base channels", "resnet34": "base channels",
    "preact_resnet18": "base channels", "wrn28_10": "widen factor", "wrn34_10": "widen factor",
}


@dataclass
class WidthPoint:
    """One width of a series, over its finished seeds."""

    width: int
    params: int | None
    test_error: np.ndarray  # final test error (%), one per seed
    train_error: np.ndarray  # final train error on the given (noisy) labels (%), one per seed
    runs: list[Run]


@dataclass
class WidthSeries:
    values: dict  # the group columns but the width
    points: list[WidthPoint]  # sorted by width
    threshold: int | None = None  # the interpolation threshold, once computed

    @property
    def label(self) -> str:
        return label(self.values)


def final_error(run: Run, split: str) -> float:
    return 100 * metric_value(run.final, f"{split}/error")


def width_series(grouping: Grouping) -> list[WidthSeries]:
    """The series of a sweep over width (empty when the width does not vary); only
    finished runs count."""
    if WIDTH not in grouping.columns:
        return []
    points: dict[tuple, list[WidthPoint]] = defaultdict(list)
    rest: dict[tuple, dict] = {}
    for group in grouping.groups:
        runs, width = group.finished, group.values[WIDTH]
        if not runs or width is None:
            continue
        values = {k: v for k, v in group.values.items() if k != WIDTH}
        key = tuple(values.values())
        rest[key] = values
        points[key].append(WidthPoint(
            int(width), runs[0].params, np.array([final_error(r, "test") for r in runs]),
            np.array([final_error(r, "train") for r in runs]), runs))
    return [WidthSeries(rest[k], sorted(p, key=lambda x: x.width)) for k, p in points.items()]


def interpolation_threshold(points: list[WidthPoint], tol: float) -> int | None:
    """The smallest width whose mean final train error on the noisy labels is <= ``tol`` (%)."""
    return next((p.width for p in points if np.nanmean(p.train_error) <= tol), None)


def default_widths(series: list[WidthSeries], count: int = 4) -> list[int]:
    """A few widths for the epoch-wise figure: the smallest, the largest, the
    interpolation thresholds and evenly spaced ones between."""
    widths = sorted({p.width for s in series for p in s.points})
    if not widths:
        return []
    picks = {widths[0], widths[-1], *(s.threshold for s in series if s.threshold is not None)}
    for i in np.linspace(0, len(widths) - 1, count).round().astype(int):
        if len(picks) >= count:
            break
        picks.add(widths[i])
    return sorted(picks)


def width_axis_label(model_options: set[str]) -> str:
    """``width (hidden units)`` for MLPs, ``width (base channels)`` for ResNets, ..."""
    units = sorted({WIDTH_UNITS.get(m, "model.width") for m in model_options}) or ["hidden units / base channels"]
    return f"width ({' / '.join(units)})"
