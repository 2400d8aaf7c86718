"""Double-descent report of a sweep: ``python -m sat.report multirun/<sweep> [--out DIR] [--widths 8 64 ...]``.

Reads every run folder below the given folder (``.hydra/config.yaml``; ``metrics.jsonl``,
one line per epoch; ``summary.json`` once the run finished) and writes into ``--out``
(default ``<folder>/report``):

- ``runs.csv``: one row per run (method, width, params, seed, final train error on the
  given noisy labels, final and lowest test error, SAT's effective alpha / E_s);
- ``test_error_vs_width.png``: final test and train error against width per method, mean
  and min-max band over seeds, the interpolation threshold (the smallest width whose mean
  train error on the noisy labels is <= ``--tol``) marked;
- ``test_error_vs_epoch.png``: test error against epoch for a few widths;
- ``test_error_heatmap.png``: test error over width x epoch per method.

A sweep may be partly finished: runs without ``summary.json`` are reported as
unfinished, and the jobs of the sweep's grid (from the ``multirun.yaml`` Hydra writes at
the sweep root) that have no folder yet as not started; the figures use finished runs.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf


@dataclass
class Run:
    """One run folder, as plain values."""

    path: Path
    method: str
    width: int | None
    seed: int | None
    overrides: list[str]
    finished: bool
    params: int | None = None
    final: dict[str, float] = field(default_factory=dict)  # the last epoch's metrics
    effective: dict[str, Any] = field(default_factory=dict)  # the method's hparams as used (width scaling)
    epochs: list[int] = field(default_factory=list)
    test_error: list[float] = field(default_factory=list)  # per epoch
    train_error: list[float] = field(default_factory=list)

    @property
    def final_test_error(self) -> float:
        return _error(self.final, "test")

    @property
    def final_train_error(self) -> float:
        """Training error against the given (noisy) labels in the last epoch."""
        return _error(self.final, "train")


def _error(metrics: dict[str, float], split: str) -> float:
    if f"{split}/error" in metrics:
        return float(metrics[f"{split}/error"])
    return 1.0 - float(metrics[f"{split}/acc"]) if f"{split}/acc" in metrics else math.nan


# --- reading runs -----------------------------------------------------------------------


def load_run(path: Path) -> Run:
    """Read one run folder (it has ``.hydra/config.yaml``)."""
    cfg = OmegaConf.to_container(OmegaConf.load(path / ".hydra" / "config.yaml"), resolve=False)
    overrides_file = path / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in OmegaConf.load(overrides_file)] if overrides_file.is_file() else []
    summary = json.loads((path / "summary.json").read_text()) if (path / "summary.json").is_file() else None
    width = (cfg.get("model") or {}).get("width")
    run = Run(path=path, method=_method_name(path, cfg, summary), width=int(width) if isinstance(width, int) else None,
              seed=cfg.get("seed"), overrides=overrides, finished=summary is not None)
    metrics_file = path / "metrics.jsonl"
    text = metrics_file.read_text() if metrics_file.is_file() else ""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    run.epochs = [int(m["epoch"]) for m in lines]
    run.test_error = [_error(m, "test") for m in lines]
    run.train_error = [_error(m, "train") for m in lines]
    if summary is not None:
        run.params, run.final = summary.get("params"), summary.get("final") or {}
        run.effective = summary.get("method") or {}
    return run


def _method_name(path: Path, cfg: dict, summary: dict | None) -> str:
    """The ``method`` group option (``ce``, ``sat``): from the summary, else from Hydra's
    record of the run's choices (written at start), else the class name."""
    if summary and summary.get("choices", {}).get("method"):
        return summary["choices"]["method"]
    hydra_file = path / ".hydra" / "hydra.yaml"
    if hydra_file.is_file():
        choice = OmegaConf.select(OmegaConf.load(hydra_file), "hydra.runtime.choices.method")
        if choice:
            return str(choice)
    return str((cfg.get("method") or {}).get("_target_", "unknown")).rsplit(".", 1)[-1]


def find_runs(root: Path) -> list[Run]:
    """Every run folder below ``root`` (``root`` itself may be one)."""
    runs = [load_run(p.parent.parent) for p in sorted(Path(root).rglob(".hydra/config.yaml"))]
    return sorted(runs, key=lambda r: (r.method, r.width or 0, r.seed if r.seed is not None else -1, str(r.path)))


# --- the sweep's grid -------------------------------------------------------------------


def expand_grid(sweeper_params: dict[str, Any], task_overrides: list[str]) -> list[list[str]]:
    """The jobs Hydra's basic sweeper makes of ``hydra.sweeper.params`` and the command
    line's overrides (the command line wins for a key in both): a list of override lists.
    Hydra's own parser expands the values, so ``range(1,65)`` or ``a,b`` mean what they
    meant to the sweeper."""
    from hydra.core.override_parser.overrides_parser import OverridesParser  # the sweep syntax is Hydra's

    lines = [f"{k}={v}" for k, v in sweeper_params.items()] + list(task_overrides)
    choices: dict[str, list[str]] = {}  # key -> its values, in first-seen key order
    for o in OverridesParser.create().parse_overrides(lines):
        key = o.get_key_element()
        if o.is_sweep_override():
            if not o.is_discrete_sweep():
                raise ValueError(f"{o.input_line}: only discrete sweeps (a,b / range / choice) define a grid")
            choices[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            choices[key] = [f"{key}={o.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*choices.values())]


def sweep_grid(sweep_root: Path) -> list[list[str]] | None:
    """The jobs of the sweep at ``sweep_root`` (from its ``multirun.yaml``); None when it
    was not a basic-sweeper grid."""
    hydra = OmegaConf.load(Path(sweep_root) / "multirun.yaml").hydra
    if not str(OmegaConf.select(hydra, "sweeper._target_", default="")).endswith("BasicSweeper"):
        return None
    params = OmegaConf.to_container(hydra.sweeper.params, resolve=False) if hydra.sweeper.get("params") else {}
    return expand_grid(params or {}, list(hydra.overrides.task))


def incomplete_jobs(root: Path, runs: list[Run]) -> list[tuple[str, str]]:
    """``(status, where)`` for every job without a finished run: ``unfinished`` (a run
    folder but no summary.json) or ``not started`` (a job of a sweep's grid below
    ``root`` without a folder)."""
    out = [("unfinished", f"{r.path} (epoch {r.epochs[-1] if r.epochs else 0} logged)") for r in runs if not r.finished]
    for manifest in sorted(Path(root).rglob("multirun.yaml")):
        sweep_root = manifest.parent
        grid = sweep_grid(sweep_root)
        if grid is None:
            continue
        started = {frozenset(r.overrides) for r in runs if sweep_root in r.path.parents}
        out += [("not started", f"{sweep_root}: {' '.join(job)}") for job in grid if frozenset(job) not in started]
    return out


# --- tables -----------------------------------------------------------------------------

CSV_COLUMNS = ["method", "width", "params", "seed", "status", "epochs", "train_error_noisy_labels", "test_error",
               "best_test_error", "best_epoch", "alpha", "start_epoch", "run"]


def run_row(run: Run, root: Path) -> dict[str, Any]:
    """``best_test_error`` is the lowest test error over the epochs (the epoch-wise
    curve's minimum, an oracle: no model is selected on it)."""
    best = int(np.nanargmin(run.test_error)) if run.test_error and not all(map(math.isnan, run.test_error)) else None
    return {
        "method": run.method, "width": run.width, "params": run.params, "seed": run.seed,
        "status": "done" if run.finished else "unfinished", "epochs": run.epochs[-1] if run.epochs else 0,
        "train_error_noisy_labels": _fmt(run.final_train_error) if run.finished else "",
        "test_error": _fmt(run.final_test_error) if run.finished else "",
        "best_test_error": _fmt(run.test_error[best]) if best is not None else "",
        "best_epoch": run.epochs[best] if best is not None else "",
        "alpha": _fmt(run.effective["alpha"]) if "alpha" in run.effective else "",
        "start_epoch": run.effective.get("start_epoch", ""),
        "run": str(run.path.relative_to(root)) if root in run.path.parents else str(run.path),
    }


def _fmt(x: float) -> str:
    return "" if x is None or math.isnan(x) else f"{x:.6g}"


def write_csv(runs: list[Run], root: Path, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for run in runs:
            w.writerow(run_row(run, root))


@dataclass
class Point:
    """One (method, width) of the model-wise curve, over seeds."""

    width: int
    params: int | None
    seeds: int
    test: np.ndarray  # final test error per seed
    train: np.ndarray  # final train error (noisy labels) per seed


def width_curves(runs: list[Run]) -> dict[str, list[Point]]:
    """Finished runs with a width, grouped by method, sorted by width."""
    groups: dict[tuple[str, int], list[Run]] = defaultdict(list)
    for r in runs:
        if r.finished and r.width is not None:
            groups[(r.method, r.width)].append(r)
    curves: dict[str, list[Point]] = defaultdict(list)
    for (method, width), rs in sorted(groups.items()):
        curves[method].append(Point(width, rs[0].params, len(rs), np.array([r.final_test_error for r in rs]),
                                    np.array([r.final_train_error for r in rs])))
    return dict(curves)


def interpolation_threshold(points: list[Point], tol: float) -> int | None:
    """The smallest width whose mean final train error on the noisy labels is <= tol."""
    return next((p.width for p in points if np.nanmean(p.train) <= tol), None)


# --- figures ----------------------------------------------------------------------------

COLORS = {"ce": "tab:red", "sat": "tab:blue", "sat_sce": "tab:green"}


def _pyplot():
    """pyplot on the Agg backend: files only, no display needed (servers, CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _color(method: str, i: int) -> str:
    return COLORS.get(method, f"C{i + 3}")


def _mean_over_seeds(runs: list[Run]) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and the seed-mean test error per epoch (runs of unequal length padded with NaN)."""
    n = max(len(r.epochs) for r in runs)
    grid = np.full((len(runs), n), np.nan)
    for i, r in enumerate(runs):
        grid[i, : len(r.test_error)] = r.test_error
    return np.arange(1, n + 1), np.nanmean(grid, axis=0)


def plot_width(curves: dict[str, list[Point]], thresholds: dict[str, int | None], title: str, path: Path) -> None:
    plt = _pyplot()
    fig, (ax, ax_train) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for i, (method, points) in enumerate(curves.items()):
        c, w = _color(method, i), [p.width for p in points]
        test = np.array([np.nanmean(p.test) for p in points])
        seeds = max(p.seeds for p in points)
        ax.plot(w, test, "o-", color=c, label=f"{method} (mean of {seeds} seed{'s' * (seeds > 1)})")
        ax.fill_between(w, [np.nanmin(p.test) for p in points], [np.nanmax(p.test) for p in points], color=c, alpha=0.2)
        ax_train.plot(w, [np.nanmean(p.train) for p in points], "o-", color=c, label=method)
        if thresholds.get(method) is not None:
            for a in (ax, ax_train):
                a.axvline(thresholds[method], color=c, ls="--", lw=1)
            ax.annotate(f"{method} interpolates\nfrom width {thresholds[method]}",
                        (thresholds[method], ax.get_ylim()[1]), xytext=(4, -4), textcoords="offset points",
                        va="top", fontsize=8, color=c)
    ax.set_ylabel("final test error")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    ax_train.set_ylabel("final train error\n(given noisy labels)")
    ax_train.set_xlabel("width")
    ax_train.set_xscale("log", base=2)
    all_w = sorted({p.width for pts in curves.values() for p in pts})
    ax_train.set_xticks(all_w, [str(x) for x in all_w])
    ax_train.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_epochs(runs: list[Run], methods: list[str], widths: list[int], title: str, path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 4), sharey=True, squeeze=False)
    cmap, top = plt.get_cmap("viridis"), 0.0
    for ax, method in zip(axes[0], methods):
        for j, width in enumerate(widths):
            rs = [r for r in runs if r.method == method and r.width == width and r.epochs]
            if rs:
                epochs, err = _mean_over_seeds(rs)
                ax.plot(epochs, err, color=cmap(j / max(len(widths) - 1, 1)), label=f"width {width}")
                top = max(top, float(np.nanmax(err[len(err) // 20:])))  # the first epochs' high errors hide the rest
        ax.set_xscale("log")
        ax.set_title(method)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("test error (mean over seeds)")
    axes[0][0].set_ylim(0, min(1.0, 1.15 * top) if top > 0 else 1.0)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_heatmap(runs: list[Run], methods: list[str], title: str, path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 4), sharey=True, squeeze=False)
    grids = {}
    for method in methods:
        widths = sorted({r.width for r in runs if r.method == method and r.width is not None and r.epochs})
        rows = [_mean_over_seeds([r for r in runs if r.method == method and r.width == w and r.epochs])[1]
                for w in widths]
        n = max((len(row) for row in rows), default=0)
        grids[method] = (widths, np.array([np.pad(row, (0, n - len(row)), constant_values=np.nan) for row in rows]))
    finite = [g[np.isfinite(g)] for _, g in grids.values() if g.size]
    vmin, vmax = (min(f.min() for f in finite), max(f.max() for f in finite)) if finite else (0, 1)
    mesh = None
    for ax, method in zip(axes[0], methods):
        widths, grid = grids[method]
        if grid.size:
            epochs = np.arange(grid.shape[1] + 1) + 0.5  # cell edges
            mesh = ax.pcolormesh(epochs, np.arange(len(widths) + 1), grid, vmin=vmin, vmax=vmax, cmap="magma_r")
            ax.set_yticks(np.arange(len(widths)) + 0.5, [str(w) for w in widths])
        ax.set_xscale("log")
        ax.set_title(method)
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("width")
    if mesh is not None:
        fig.colorbar(mesh, ax=axes[0].tolist(), label="test error (mean over seeds)")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def default_widths(points: list[Point], thresholds: list[int | None], count: int = 4) -> list[int]:
    """A few widths for the epoch-wise figure: the smallest, the largest, the
    interpolation threshold(s) and evenly spaced ones between."""
    widths = sorted({p.width for p in points})
    if not widths:
        return []
    picks = {widths[0], widths[-1], *(t for t in thresholds if t is not None)}
    for i in np.linspace(0, len(widths) - 1, count).round().astype(int):
        if len(picks) >= count:
            break
        picks.add(widths[i])
    return sorted(picks)


# --- the report -------------------------------------------------------------------------


def _title(runs: list[Run]) -> str:
    """Sweep name, data, noise, epochs: what produced the figure."""
    r = next((r for r in runs if r.finished), runs[0])
    cfg = OmegaConf.load(r.path / ".hydra" / "config.yaml")

    def get(key: str, default: Any = "?") -> Any:
        return OmegaConf.select(cfg, key, default=default)

    data = get("dataset.name", None) or str(get("dataset._target_")).rsplit("_", 1)[-1]
    noise = str(get("noise._target_")).rsplit(".", 1)[-1].replace("LabelNoise", "").lower()
    return f"{get('name')}: {data}, {noise} label noise {get('noise.rate')}, {get('trainer.epochs')} epochs"


def report(
    root: str | Path, out: str | Path | None = None, widths: list[int] | None = None, tol: float = 0.01,
) -> dict[str, Any]:
    """Write the CSV and figures for the runs below ``root``; returns what it found."""
    root = Path(root).resolve()
    out = Path(out) if out is not None else root / "report"
    runs = find_runs(root)
    if not runs:
        raise SystemExit(f"error: no run folders (.hydra/config.yaml) below {root}")
    out.mkdir(parents=True, exist_ok=True)
    write_csv(runs, root, out / "runs.csv")
    incomplete = incomplete_jobs(root, runs)
    curves = width_curves(runs)
    thresholds = {m: interpolation_threshold(pts, tol) for m, pts in curves.items()}
    finished = [r for r in runs if r.finished]
    figures = []
    if curves:
        title = _title(runs)
        methods = list(curves)
        plot_width(curves, thresholds, title, out / "test_error_vs_width.png")
        chosen = widths or default_widths([p for pts in curves.values() for p in pts], list(thresholds.values()))
        plot_epochs(finished, methods, chosen, title, out / "test_error_vs_epoch.png")
        plot_heatmap(finished, methods, title, out / "test_error_heatmap.png")
        figures = ["test_error_vs_width.png", "test_error_vs_epoch.png", "test_error_heatmap.png"]
    return {"runs": runs, "curves": curves, "thresholds": thresholds, "incomplete": incomplete, "out": out,
            "figures": figures}


def format_summary(result: dict[str, Any], tol: float) -> str:
    lines = [f"{'method':<8} {'width':>6} {'params':>9} {'seeds':>5} {'test error':>17} {'train error':>11}"]
    for method, points in result["curves"].items():
        for p in points:
            lines.append(f"{method:<8} {p.width:>6} {p.params or '':>9} {p.seeds:>5} "
                         f"{np.nanmean(p.test):>9.4f} ± {np.nanstd(p.test):.4f} {np.nanmean(p.train):>11.4f}")
    for method, t in result["thresholds"].items():
        lines.append(f"interpolation threshold ({method}, train error <= {tol:g}): "
                     + (f"width {t}" if t is not None else "not reached"))
    n_done = sum(r.finished for r in result["runs"])
    lines.append(f"{n_done} finished run(s); {len(result['incomplete'])} missing or unfinished")
    lines += [f"  {status}: {where}" for status, where in result["incomplete"]]
    lines.append(f"wrote {result['out'] / 'runs.csv'}" + "".join(f", {f}" for f in result["figures"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sat.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", help="a sweep folder (multirun/<name>/<date>/<time>) or any folder of runs")
    parser.add_argument("--out", help="where to write the CSV and figures (default: DIR/report)")
    parser.add_argument("--widths", type=int, nargs="+", help="widths for the epoch-wise figure (default: a few)")
    parser.add_argument("--tol", type=float, default=0.01,
                        help="train error (noisy labels) counted as interpolation, for the threshold (default 0.01)")
    args = parser.parse_args(argv)
    result = report(args.dir, args.out, args.widths, args.tol)
    print(format_summary(result, args.tol))
    return 0


if __name__ == "__main__":
    sys.exit(main())
