"""Tables built from the grouped runs: ``runs.csv`` (one row per run) and the printed
per-group summary. Every number is a percentage, and its column says so (``_pct``,
``(%)``); the test accuracy at the epoch of best validation accuracy is named so, never
"best test accuracy" (it is not picked on the test set)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from sat.report.groups import Grouping, fmt
from sat.report.runs import Run, metric_value
from sat.run.files import write_csv


def relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if root == path or root in path.parents else str(path)


def pct(fraction: float | None) -> float:
    return math.nan if fraction is None else 100 * float(fraction)


def cell(x: Any, digits: int = 4) -> Any:
    """A CSV cell: numbers rounded, NaN and None empty."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return round(x, digits) if isinstance(x, float) else x


def run_row(run: Run, columns: list[str], root: Path) -> dict[str, Any]:
    """One run. Final values only for a finished run; the lowest test error over the
    epochs is an oracle (chosen on the test set), the minimum of the epoch-wise curve."""
    done = run.finished
    best = run.at_best_val or {}
    test_curve = [100 * e for e in run.curve("test/error")]
    low = int(np.nanargmin(test_curve)) if any(not math.isnan(e) for e in test_curve) else None
    row = {"run": relative(run.path, root), "status": run.status}
    row.update({c: fmt(run.value(c)) if run.value(c) is not None else "" for c in columns})
    row.update({
        "seed": run.seed,
        "epochs_done": run.epochs_done,
        "epochs": run.summary.get("epochs", run.settings.get("trainer.epochs")),
        "params": run.params,
        "train_error_pct": pct(metric_value(run.final, "train/error")) if done else None,
        "test_error_pct": pct(metric_value(run.final, "test/error")) if done else None,
        "test_acc_pct": pct(metric_value(run.final, "test/acc")) if done else None,
        "test_acc_at_best_val_pct": pct(best.get("test/acc")) if best else None,
        "val_acc_at_best_val_pct": pct(best.get("val/acc")) if best else None,
        "best_val_epoch": best.get("epoch"),
        "min_test_error_over_epochs_pct": test_curve[low] if low is not None else None,
        "min_test_error_epoch": run.epochs[low] if low is not None else None,
        "noise_realised_error_pct": pct((run.summary.get("noise") or {}).get("realised_error")),
    })
    row.update({f"effective.{k}": v for k, v in run.effective.items() if isinstance(v, (int, float, str, bool))})
    row.update({"wall_time_s": run.summary.get("wall_time_s"), "error": first_line(run.error)})
    return {k: cell(v) for k, v in row.items()}


def first_line(text: str | None) -> str:
    return "" if not text else text.strip().splitlines()[0][:300]


def write_runs_csv(grouping: Grouping, root: Path, path: Path) -> None:
    rows = [run_row(r, grouping.columns, root) for g in grouping.groups for r in g.runs]
    fields = list(dict.fromkeys(k for row in rows for k in row))  # effective.* differ by method
    write_csv(path, fields, rows)


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (n - 1; NaN for one value) and count of the finite values."""
    x = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if x.size == 0:
        return math.nan, math.nan, 0
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan, int(x.size)


def mean_pm(values: list[float], digits: int = 2) -> str:
    mean, std, n = mean_std(values)
    if n == 0:
        return "-"
    return f"{mean:.{digits}f}" if n == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Aligned plain-text columns (first column left, the rest right)."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header)] + [line(r) for r in rows])


def group_table(grouping: Grouping, validation: bool = True) -> str:
    """One line per group: its settings, finished/all runs, final test and train error
    and (``validation``: some run has a validation split) the test accuracy at the
    best-validation epoch (mean ± std over finished seeds)."""
    header = [*(grouping.columns or ["group"]), "finished", "params", "test error (%)", "train error (%)",
              "test acc at best val epoch (%)"][:None if validation else -1]
    rows = []
    for g in grouping.groups:
        runs = g.finished
        best = [pct((r.at_best_val or {}).get("test/acc")) for r in runs]
        rows.append([
            *([fmt(g.values[c]) for c in grouping.columns] or ["all runs"]),
            f"{len(runs)}/{len(g.runs)}", str(runs[0].params if runs and runs[0].params is not None else ""),
            mean_pm([pct(metric_value(r.final, "test/error")) for r in runs]),
            mean_pm([pct(metric_value(r.final, "train/error")) for r in runs]),
            mean_pm(best) if any(not math.isnan(b) for b in best) else "n/a",
        ][:len(header)])
    return text_table(header, rows)
