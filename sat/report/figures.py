"""The report's figures, ready for a paper: each written as PNG (200 dpi) and PDF
(fonts embedded as TrueType, editable), in the Okabe-Ito colour-blind-safe palette, with
errors in percent and labelled axes. Figures take prepared data; nothing here reads
runs or decides groups."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from sat.report.double_descent import WidthSeries
from sat.report.runs import Run
from sat.run.figures import line_style, save
from sat.run.figures import pyplot as _pyplot

HEATMAP_CMAP = "cividis"  # perceptually uniform and readable with every colour-vision deficiency


def epoch_axis(ax, epochs: int) -> None:
    """Log-scaled epochs for long runs (double descent spans 1..4000), plain numbers either way."""
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    ax.set_xlabel("epoch")
    if epochs > 20:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def mean_curve(runs: list[Run], metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(epochs, mean, min, max)`` of ``metric`` in percent over ``runs`` (runs of
    unequal length padded with NaN)."""
    n = max((len(r.history) for r in runs), default=0)
    grid = np.full((len(runs), n), np.nan)
    for i, r in enumerate(runs):
        grid[i, : len(r.history)] = r.curve(metric)
    grid *= 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an epoch without a value: NaN is the answer
        return np.arange(1, n + 1), np.nanmean(grid, 0), np.nanmin(grid, 0), np.nanmax(grid, 0)


def plot_width(series: list[WidthSeries], title: str, xlabel: str, tol: float, stem: Path) -> list[Path]:
    """Final test error (mean and min-max over seeds) and train error on the noisy labels
    against width, one line per series, interpolation thresholds dashed."""
    plt = _pyplot()
    fig, (ax, ax_train) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for i, s in enumerate(series):
        style, w = line_style(i), [p.width for p in s.points]
        seeds = max(len(p.runs) for p in s.points)
        ax.plot(w, [np.nanmean(p.test_error) for p in s.points], marker="o", **style,
                label=f"{s.label} (mean of {seeds} seed{'s' * (seeds > 1)})")
        ax.fill_between(w, [np.nanmin(p.test_error) for p in s.points], [np.nanmax(p.test_error) for p in s.points],
                        color=style["color"], alpha=0.2, linewidth=0)
        ax_train.plot(w, [np.nanmean(p.train_error) for p in s.points], marker="o", **style)
        if s.threshold is not None:
            for a in (ax, ax_train):
                a.axvline(s.threshold, color=style["color"], linestyle="--", linewidth=1)
            ax.annotate(f"interpolates from width {s.threshold}\n(train error <= {tol:g}%)", (s.threshold, 1),
                        xycoords=("data", "axes fraction"), xytext=(4, -4), textcoords="offset points", va="top",
                        fontsize=8, color=style["color"])
    ax.set_ylabel("final test error (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    ax_train.set_ylabel("final train error (%)\n(given noisy labels)")
    ax_train.set_xlabel(xlabel)
    ax_train.set_xscale("log", base=2)
    widths = sorted({p.width for s in series for p in s.points})
    ax_train.set_xticks(widths, [str(x) for x in widths])
    for a in (ax, ax_train):
        a.grid(alpha=0.3)
    fig.tight_layout()
    return save(fig, stem)


def plot_epochs_by_width(series: list[WidthSeries], widths: list[int], title: str, stem: Path) -> list[Path]:
    """Test error against epoch, one panel per series, one line per chosen width."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series) + 0.5, 4), sharey=True, squeeze=False)
    top = 0.0
    for ax, s in zip(axes[0], series):
        for j, width in enumerate(widths):
            runs = [r for p in s.points if p.width == width for r in p.runs]
            if runs:
                epochs, mean, _, _ = mean_curve(runs, "test/error")
                ax.plot(epochs, mean, label=f"width {width}", **line_style(j))
                top = max(top, float(np.nanmax(mean[len(mean) // 20:])))  # the first epochs' high errors hide the rest
        epoch_axis(ax, max((len(r.history) for p in s.points for r in p.runs), default=0))
        ax.set_title(s.label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("test error (%, mean over seeds)")
    axes[0][0].set_ylim(0, min(100.0, 1.15 * top) if top > 0 else 100.0)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, stem)


def plot_epochs_by_group(groups: list[tuple[str, list[Run]]], title: str, stem: Path) -> list[Path]:
    """Test error against epoch, one line per group (mean, min-max band over seeds)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, runs) in enumerate(groups):
        epochs, mean, lo, hi = mean_curve(runs, "test/error")
        style = line_style(i)
        ax.plot(epochs, mean, label=f"{name} ({len(runs)} seed{'s' * (len(runs) > 1)})", **style)
        if len(runs) > 1:
            ax.fill_between(epochs, lo, hi, color=style["color"], alpha=0.15, linewidth=0)
    epoch_axis(ax, max((len(r.history) for _, runs in groups for r in runs), default=0))
    return _finish_lines(fig, ax, "test error (%, mean over seeds)", title, stem)


def plot_heatmap(series: list[WidthSeries], title: str, ylabel: str, stem: Path) -> list[Path]:
    """Test error (%) over width x epoch, one panel per series, one colour scale."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series) + 1, 4), sharey=True, squeeze=False)
    grids = []
    for s in series:
        rows = [mean_curve(p.runs, "test/error")[1] for p in s.points]
        n = max((len(row) for row in rows), default=0)
        grids.append(np.array([np.pad(row, (0, n - len(row)), constant_values=np.nan) for row in rows]))
    finite = [g[np.isfinite(g)] for g in grids if g.size and np.isfinite(g).any()]
    vmin, vmax = (min(f.min() for f in finite), max(f.max() for f in finite)) if finite else (0.0, 100.0)
    mesh = None
    for ax, s, grid in zip(axes[0], series, grids):
        if grid.size:
            edges = np.arange(grid.shape[1] + 1) + 0.5  # epoch cells centred on 1, 2, ...
            mesh = ax.pcolormesh(edges, np.arange(len(s.points) + 1), grid, vmin=vmin, vmax=vmax, cmap=HEATMAP_CMAP)
            ax.set_yticks(np.arange(len(s.points)) + 0.5, [str(p.width) for p in s.points])
        epoch_axis(ax, grid.shape[1] if grid.ndim == 2 else 0)
        ax.set_title(s.label, fontsize=9)
    axes[0][0].set_ylabel(ylabel)
    if mesh is not None:
        fig.colorbar(mesh, ax=axes[0].tolist(), label="test error (%, mean over seeds)")
    fig.suptitle(title, fontsize=10)
    return save(fig, stem)


def plot_knn_vs_epoch(curves: list, title: str, stem: Path) -> list[Path]:
    """kNN accuracy (%) against epoch, one line per group (``sat.report.ssl.Curve``: the
    mean over seeds, a band of ± one sample std where more than one seed logged the epoch)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, c in enumerate(curves):
        style, seeds = line_style(i), int(c.n.max()) if len(c.n) else 0
        ax.plot(c.epochs, c.mean, marker="o", markersize=3, label=f"{c.label} ({seeds} seed{'s' * (seeds != 1)})",
                **style)
        band = c.n > 1
        if band.any():
            ax.fill_between(c.epochs[band], (c.mean - c.std)[band], (c.mean + c.std)[band], color=style["color"],
                            alpha=0.15, linewidth=0)
    ax.set_xlabel("epoch")
    return _finish_lines(fig, ax, "kNN accuracy (%, test; mean ± std over seeds)", title, stem)


def _finish_lines(fig, ax, ylabel: str, title: str, stem: Path) -> list[Path]:
    """A line plot's labels, grid and legend, saved as png and pdf."""
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, stem)
