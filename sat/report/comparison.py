"""The method x noise-setting comparison (``comparison.md``, ``comparison.csv``) of runs
trained on labels: final test accuracy and (where the runs have a validation split) test
accuracy at the epoch of best validation accuracy (in percent), and each run's wall time
(minutes: what a method costs), mean ± sample standard deviation over seeds, finished runs only.

Rows are the groups' settings other than noise (the method, and any other setting that
differs); columns are the noise settings (the ``noise`` option and ``noise.*``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sat.report.groups import Grouping, fmt, label
from sat.report.runs import Run, metric_value
from sat.report.tables import cell, mean_pm, mean_std, pct
from sat.run import files


@dataclass(frozen=True)
class Metric:
    key: str  # CSV column stem
    title: str
    value: Callable[[Run], float]  # percent (time: minutes); NaN when the run lacks it
    needs_validation: bool = False  # measured only by runs with a validation split


METRICS = (
    Metric("final_test_acc_pct", "Final test accuracy (%)", lambda r: pct(metric_value(r.final, "test/acc"))),
    Metric("test_acc_at_best_val_pct", "Test accuracy at the best-validation epoch (%)",
           lambda r: pct((r.at_best_val or {}).get("test/acc")), needs_validation=True),
    # wall clock, so it includes whatever else the machine ran: compare methods timed side by side
    Metric("wall_time_min", "Wall time per run (minutes)", lambda r: _minutes(r.summary.get("wall_time_s"))),
)


def _minutes(seconds: Any) -> float:
    return float(seconds) / 60 if isinstance(seconds, (int, float)) else math.nan


def is_noise_column(column: str) -> bool:
    return column == "noise" or column.startswith("noise.")


@dataclass
class Comparison:
    row_columns: list[str]
    noise_columns: list[str]
    rows: list[tuple]  # row values, in the groups' order
    cols: list[tuple]  # noise values, in the groups' order
    cells: dict[tuple[tuple, tuple], list[Run]]  # (row, col) -> finished runs
    noise_title: str  # the column header when no noise setting differs
    metrics: tuple[Metric, ...] = METRICS  # what the runs measured

    def col_label(self, col: tuple) -> str:
        return label(dict(zip(self.noise_columns, col))) if self.noise_columns else self.noise_title

    def runs(self, row: tuple, col: tuple) -> list[Run]:
        return self.cells.get((row, col), [])


def compare(grouping: Grouping, noise_title: str = "all runs", metrics: tuple[Metric, ...] = METRICS) -> Comparison:
    rows_c = [c for c in grouping.columns if not is_noise_column(c)]
    noise_c = [c for c in grouping.columns if is_noise_column(c)]
    rows, cols, cells = [], [], {}
    for g in grouping.groups:
        row, col = tuple(g.values[c] for c in rows_c), tuple(g.values[c] for c in noise_c)
        rows += [row] if row not in rows else []
        cols += [col] if col not in cols else []
        cells[(row, col)] = g.finished
    return Comparison(rows_c, noise_c, rows, cols, cells, noise_title, metrics)


def to_markdown(cmp: Comparison, title: str) -> str:
    counts = {len(rs) for rs in cmp.cells.values() if rs}
    n = counts.pop() if len(counts) == 1 else None
    seeds = f"n = {n} seed{'s' * (n != 1)} per cell" if n else "n seeds per cell in brackets"
    lines = [f"# Comparison: {title}" if title else "# Comparison", "",
             f"Mean ± sample standard deviation over seeds ({seeds}); accuracies in percent; finished runs only.",
             ""]
    row_header = cmp.row_columns or ["runs"]
    for metric in cmp.metrics:
        lines += [f"## {metric.title}", ""]
        if all(math.isnan(metric.value(r)) for rs in cmp.cells.values() for r in rs):
            lines += ["n/a: no finished run has it yet", ""]
            continue
        lines.append("| " + " | ".join(row_header + [cmp.col_label(c) for c in cmp.cols]) + " |")
        lines.append("|" + "---|" * len(row_header) + "---:|" * len(cmp.cols))
        for row in cmp.rows:
            cells = []
            for col in cmp.cols:
                runs = cmp.runs(row, col)
                text = mean_pm([metric.value(r) for r in runs])
                cells.append(text + (f" (n={len(runs)})" if "brackets" in seeds and runs else ""))
            lines.append("| " + " | ".join([fmt(v) for v in row] or ["all"]) + " | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_csv(cmp: Comparison, path: Path) -> None:
    """One line per (row, noise setting): the settings, the seeds, and per metric its
    mean, sample std and number of runs."""
    fields = [*cmp.row_columns, *cmp.noise_columns, "seeds"]
    for m in cmp.metrics:
        fields += [f"{m.key}_mean", f"{m.key}_std", f"{m.key}_n"]
    rows = []
    for row in cmp.rows:
        for col in cmp.cols:
            if (row, col) not in cmp.cells:  # no group has this combination
                continue
            runs = cmp.runs(row, col)
            out: dict[str, Any] = {**dict(zip(cmp.row_columns, map(fmt, row))),
                                   **dict(zip(cmp.noise_columns, map(fmt, col))),
                                   "seeds": " ".join(str(r.seed) for r in runs)}
            for m in cmp.metrics:
                mean, std, n = mean_std([m.value(r) for r in runs])
                out.update({f"{m.key}_mean": cell(mean), f"{m.key}_std": cell(std), f"{m.key}_n": n})
            rows.append(out)
    files.write_csv(path, fields, rows)
