"""Selective-classification results as files: a long CSV (one row per model and target
coverage) and the risk-coverage figure (PNG and PDF) overlaying several models."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sat.run import files
from sat.run.figures import LINESTYLES, OKABE_ITO, pyplot, save
from sat.selective.risk import SelectiveResult

# Line styles and markers vary with the colours too, so a grey print still works.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

CSV_COLUMNS = (
    "name", "target_coverage_pct", "threshold", "calibration_coverage_pct", "calibration_error_pct",
    "coverage_pct", "selective_error_pct", "sorted_error_pct", "error_pct", "aurc_pct", "eaurc_pct",
    "n_calibration", "n_eval",
)


def _pct(x: float) -> float:
    return round(100.0 * x, 4) if math.isfinite(x) else x


def write_csv(path: str | Path, results: Sequence[SelectiveResult]) -> Path:
    """One row per (result, target coverage). Each result's ``meta`` keys (checkpoint,
    epoch, score, seed ...) come first, so every row names what produced it. The
    threshold is a log-probability (``exp`` gives 1 - p_abstain or the max-softmax)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta_keys = list(dict.fromkeys(k for r in results for k in r.meta))
    files.write_csv(path, [*meta_keys, *CSV_COLUMNS], [
        [*(r.meta.get(k, "") for k in meta_keys), r.name, _pct(p.target), p.threshold,
         _pct(p.calibration_coverage), _pct(p.calibration_error), _pct(p.coverage), _pct(p.selective_error),
         _pct(p.sorted_error), _pct(r.error), _pct(r.aurc), _pct(r.eaurc), r.n_calibration, r.n_eval]
        for r in results for p in r.points])
    return path


def _thinned(coverage: np.ndarray, risk: np.ndarray, lowest: float, points: int = 1000):
    """The curve from coverage ``lowest`` on, at most ``points`` points: below a few
    percent a handful of samples decide the error, and 26,000 points bloat a PDF."""
    keep = coverage >= lowest
    coverage, risk = coverage[keep], risk[keep]
    if len(coverage) > points:
        idx = np.unique(np.linspace(0, len(coverage) - 1, points).round().astype(int))
        coverage, risk = coverage[idx], risk[idx]
    return coverage, risk


def plot_risk_coverage(
    results: Sequence[SelectiveResult], path_stem: str | Path, title: str | None = None, lowest_coverage: float = 0.05,
) -> list[Path]:
    """The evaluation split's risk-coverage curve of each result (lines) and the
    realised (coverage, selective error) of its calibrated thresholds (markers), in one
    figure; written as ``<path_stem>.png`` and ``<path_stem>.pdf``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, r in enumerate(results):
        color, style, marker = OKABE_ITO[i % len(OKABE_ITO)], LINESTYLES[i % len(LINESTYLES)], MARKERS[i % len(MARKERS)]
        cov, risk = _thinned(*r.curve, lowest=lowest_coverage)
        ax.plot(100 * cov, 100 * risk, color=color, ls=style, lw=1.5,
                label=f"{r.name} (AURC {100 * r.aurc:.2f}%)")
        pts = [(p.coverage, p.selective_error) for p in r.points if math.isfinite(p.selective_error)]
        if pts:
            x, y = zip(*pts)
            ax.plot(100 * np.asarray(x), 100 * np.asarray(y), ls="none", marker=marker, ms=5, color=color,
                    markerfacecolor="white", markeredgewidth=1.2)
    ax.set_xlabel("coverage (%)")
    ax.set_ylabel("selective error (%)")
    ax.set_xlim(0, 100)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    n_eval = sorted({r.n_eval for r in results})
    note = (f"lines: evaluation split ({', '.join(map(str, n_eval))} samples); "
            "markers: thresholds from the calibration split")
    ax.set_title(f"{title}\n{note}" if title else note, fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    return save(fig, stem)
