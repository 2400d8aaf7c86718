"""The self-supervised comparison (``ssl.md``, ``ssl.csv``) and the data of the
kNN-vs-epoch curves (``knn_vs_epoch.csv``) of a folder of runs.

SSL runs are the runs whose ``metrics.jsonl`` logs ``test/knn_acc`` (every SSL method
does, at each evaluation). Per group of finished SSL runs (the same grouping as the rest
of the report: every setting but the seed), mean ± sample standard deviation over seeds,
in percent, of:

- the kNN accuracy the run logged at its last evaluation (``test/knn_acc``);
- each offline evaluation of the final weights that ``evaluate.py report=linear_probe|knn
  checkpoint=RUN/checkpoints/last.pt`` left in ``RUN/evaluations/last.<report>*.json``:
  one column per report and labelled subset (``10/class``, ``10%``, all labels; kNN's k
  and T), with the same protocol on the random-init backbone beside it; a run evaluated
  twice with one setting counts its newest file;
- the final projection std x sqrt(d) (``repr/projection_std``: about 1 spread, 0 collapsed).

The curves: ``test/knn_acc`` against epoch per group, mean and sample std over the
seeds that logged that epoch (the figure draws mean ± std)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sat.report.groups import Group, Grouping, fmt, group_runs
from sat.report.runs import Run
from sat.report.tables import cell, mean_pm, mean_std, pct
from sat.run import files

KNN = "test/knn_acc"
PROJECTION_STD = "repr/projection_std"
REPORTS = ("linear_probe", "knn")
CHECKPOINT = "last"  # the final weights: what the run's own last kNN value also measures


def is_ssl(run: Run) -> bool:
    return any(KNN in m for m in run.history)


def last_logged(run: Run, metric: str) -> float:
    """``metric`` at the last epoch that logged it (NaN when none did)."""
    for m in reversed(run.history):
        if m.get(metric) is not None:
            return float(m[metric])
    return math.nan


@dataclass(frozen=True, order=True)
class EvalKey:
    """One offline protocol: the report and the labelled subset (and kNN's k, T)."""

    report: str
    labels: str  # "10/class", "10%", "all labels"
    knn: str = ""  # "k 200, T 0.1" for kNN

    @property
    def title(self) -> str:
        name = "linear probe" if self.report == "linear_probe" else "kNN"
        return f"{name} ({', '.join(x for x in (self.labels, self.knn) if x)})"

    @property
    def column(self) -> str:
        labels = self.labels.replace("/", "_per_").replace("%", "pct").replace(" ", "_")
        return "_".join(x for x in (self.report, labels, self.knn.replace(", ", "_").replace(" ", "")) if x)


def _labels(result: dict[str, Any]) -> str:
    if result.get("labels_per_class") is not None:
        return f"{result['labels_per_class']}/class"
    if result.get("label_fraction") is not None:
        return f"{100 * float(result['label_fraction']):g}%"
    return "all labels"


def read_evaluations(run: Run, stale: list[str] | None = None) -> dict[EvalKey, dict[str, Any]]:
    """The offline evaluations of the run's final weights, one per protocol (the newest
    file). An evaluation of another epoch (``last.pt`` evaluated while the run was still
    training) is not the final weights': it is left out, with a line in ``stale``."""
    folder = run.path / "evaluations"
    found: dict[EvalKey, tuple[float, dict[str, Any]]] = {}
    if not folder.is_dir():
        return {}
    for path in folder.glob(f"{CHECKPOINT}.*.json"):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(result, dict) or result.get("report") not in REPORTS or result.get("test/acc") is None:
            continue
        if result.get("epoch") != run.epochs_done:
            if stale is not None:
                stale.append(f"{path.relative_to(run.path.parent)}: of epoch {result.get('epoch', '(not recorded)')}, "
                             f"the run's final weights are of epoch {run.epochs_done}: left out (evaluate its "
                             f"{CHECKPOINT}.pt again)")
            continue
        knn = f"k {result.get('k')}, T {fmt(result.get('temperature'))}" if result["report"] == "knn" else ""
        key = EvalKey(result["report"], _labels(result), knn)
        mtime = path.stat().st_mtime
        if key not in found or mtime >= found[key][0]:
            found[key] = (mtime, result)
    return {k: r for k, (_, r) in found.items()}


@dataclass(frozen=True)
class Column:
    key: str  # CSV column stem
    title: str
    value: Callable[[Run], float]  # NaN when the run lacks it
    digits: int = 1


@dataclass
class SSLComparison:
    grouping: Grouping  # of the SSL runs only
    columns: list[Column]
    protocols: list[EvalKey]  # the offline evaluations found
    evaluations: dict[Path, dict[EvalKey, dict[str, Any]]] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)  # evaluations of another epoch than the final one, left out

    @property
    def groups(self) -> list[Group]:
        return [g for g in self.grouping.groups if g.finished]


def _evaluated(evaluations: dict[Path, dict], key: EvalKey, field_name: str) -> Callable[[Run], float]:
    return lambda r: pct((evaluations.get(r.path) or {}).get(key, {}).get(field_name))


def compare(runs: list[Run], ignore: tuple[str, ...] = ()) -> SSLComparison | None:
    """The SSL runs' comparison; None when no run is an SSL run."""
    ssl = [r for r in runs if is_ssl(r)]
    if not ssl:
        return None
    stale: list[str] = []
    evaluations = {r.path: read_evaluations(r, stale) for r in ssl if r.finished}
    keys = sorted({k for e in evaluations.values() for k in e}, key=lambda k: (k.report != "knn", k))
    columns = [Column("knn_last_logged_pct", "kNN, last evaluation in training (%)", lambda r: pct(last_logged(r, KNN)))]
    for key in keys:
        columns += [Column(f"{key.column}_pct", f"{key.title} (%)", _evaluated(evaluations, key, "test/acc")),
                    Column(f"{key.column}_random_init_pct", f"{key.title}, random init (%)",
                           _evaluated(evaluations, key, "random_init/test/acc"))]
    columns.append(Column("projection_std", "projection std x sqrt(d)", lambda r: last_logged(r, PROJECTION_STD), 2))
    return SSLComparison(group_runs(ssl, ignore), columns, keys, evaluations, sorted(stale))


def to_markdown(cmp: SSLComparison, title: str) -> str:
    header = cmp.grouping.columns or ["runs"]
    lines = [f"# Self-supervised runs: {title}" if title else "# Self-supervised runs", "",
             ("Mean ± sample standard deviation over seeds (n: finished runs), in percent; finished runs only. "
              "Offline evaluations: `evaluate.py report=linear_probe|knn checkpoint=RUN/checkpoints/last.pt` "
              "(RUN/evaluations/last.*.json), of each run's final epoch only."), ""]
    if not cmp.protocols:
        lines += ["No offline evaluation found (RUN/evaluations/last.linear_probe.json, last.knn.json).", ""]
    if cmp.stale:
        lines += [f"Skipped {s}" for s in cmp.stale] + [""]
    lines.append("| " + " | ".join([*header, "n", *(c.title for c in cmp.columns)]) + " |")
    lines.append("|" + "---|" * len(header) + "---:|" * (1 + len(cmp.columns)))
    for g in cmp.groups:
        values = [fmt(g.values[c]) for c in cmp.grouping.columns] or ["all"]
        cells = [mean_pm([c.value(r) for r in g.finished], c.digits) for c in cmp.columns]
        lines.append("| " + " | ".join([*values, str(len(g.finished)), *cells]) + " |")
    return "\n".join(lines)


def write_csv(cmp: SSLComparison, path: Path) -> None:
    """One line per group: its settings, seeds, and per column mean, sample std and count."""
    fields = [*cmp.grouping.columns, "seeds"]
    for c in cmp.columns:
        fields += [f"{c.key}_mean", f"{c.key}_std", f"{c.key}_n"]
    rows = []
    for g in cmp.groups:
        out: dict[str, Any] = {**{c: fmt(g.values[c]) for c in cmp.grouping.columns},
                               "seeds": " ".join(str(r.seed) for r in g.finished)}
        for c in cmp.columns:
            mean, std, n = mean_std([c.value(r) for r in g.finished])
            out.update({f"{c.key}_mean": cell(mean), f"{c.key}_std": cell(std), f"{c.key}_n": n})
        rows.append(out)
    files.write_csv(path, fields, rows)


@dataclass
class Curve:
    label: str
    epochs: np.ndarray
    mean: np.ndarray  # percent
    std: np.ndarray  # sample std over the seeds that logged the epoch (NaN for one)
    n: np.ndarray  # how many seeds logged it


def knn_curve(label: str, runs: list[Run]) -> Curve:
    """``test/knn_acc`` (%) per epoch that some run logged it, over ``runs``."""
    by_epoch: dict[int, list[float]] = {}
    for r in runs:
        for m in r.history:
            if m.get(KNN) is not None:
                by_epoch.setdefault(int(m["epoch"]), []).append(100 * float(m[KNN]))
    epochs = sorted(by_epoch)
    stats = [mean_std(by_epoch[e]) for e in epochs]
    return Curve(label, np.array(epochs, dtype=int), np.array([s[0] for s in stats]), np.array([s[1] for s in stats]),
                 np.array([s[2] for s in stats], dtype=int))


def curves(cmp: SSLComparison) -> list[Curve]:
    return [knn_curve(g.label, g.finished) for g in cmp.groups]


def write_curves_csv(data: list[Curve], path: Path) -> None:
    files.write_csv(path, ["group", "epoch", "knn_acc_pct_mean", "knn_acc_pct_std", "knn_acc_pct_n"],
              [[c.label, int(e), cell(float(mean)), cell(float(std)), int(n)]
               for c in data for e, mean, std, n in zip(c.epochs, c.mean, c.std, c.n)])
