"""The table of a sweep of ``evaluate.py -m`` or ``attack.py -m`` (its jobs' folders are
named by :mod:`sat.cli.sweeps`), written at its root when it ends, as ``sat.report``
does for training sweeps: ``results.csv``, ``results.md`` and a figure (robust accuracy
against eps when eps varies, else accuracy against checkpoint).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sat.run.files import write_atomic, write_csv
from sat.run.folder import RunFolder

RESULT_FILES = ("robustness.json", "evaluation.json", "selective.json", "label_errors.json")


def _flat(result: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The scalar values of a result, nested ones as ``detection.precision``."""
    flat: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, dict) and key not in ("noise", "attack_config"):
            flat.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float, str, bool)) and key != "files":
            flat[f"{prefix}{key}"] = value
    return flat


def _rows_of(path: Path) -> list[dict[str, Any]]:
    """A job's result file as table rows (an attack over several checkpoints: one each)."""
    result = json.loads(path.read_text(encoding="utf-8"))
    if path.name == "robustness.json":
        return [_flat(r) for r in result.get("rows", [])]
    if path.name == "selective.json":
        return [_flat({k: v for k, v in r.items() if k not in ("selective_error", "coverage")})
                for r in result.get("results", [])]
    return [_flat(result)]


def collect(root: Path) -> list[dict[str, Any]]:
    """One row per evaluated checkpoint of every job below ``root``, with its job and run."""
    rows = []
    for job in sorted(p for p in root.iterdir() if p.is_dir()):
        found = next((job / name for name in RESULT_FILES if (job / name).is_file()), None)
        if found is None:
            continue
        for row in _rows_of(found):
            checkpoint = Path(str(row.get("checkpoint", "")))
            rows.append({"job": job.name, "run": RunFolder.name_of_checkpoint(checkpoint), **row})
    return sorted(rows, key=lambda r: (r.get("eps", 0), r["run"], r.get("epoch", 0), r["job"]))


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_table(root: str | Path) -> list[Path]:
    """Write ``results.csv``, ``results.md`` and the figure at ``root``; returns the files
    (none when no job left a result)."""
    root = Path(root)
    rows = collect(root) if root.is_dir() else []
    if not rows:
        return []
    columns = _columns(rows)
    write_csv(root / "results.csv", columns, rows)
    shown = [c for c in columns if c != "checkpoint"]  # the run and epoch say which, shorter
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(_cell(r.get(c, "")) for c in shown) + " |" for r in rows]
    write_atomic(root / "results.md", "\n".join(lines) + "\n")
    return [root / "results.csv", root / "results.md", *_figure(rows, root)]


def _figure(rows: list[dict[str, Any]], root: Path) -> list[Path]:
    from sat.run.figures import line_style, pyplot, save

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    checkpoints = list(dict.fromkeys(f"{r['run']} (epoch {r.get('epoch', '?')})" for r in rows))
    eps_values = sorted({r["eps"] for r in rows if "eps" in r})
    if len(eps_values) > 1:  # robust accuracy against eps, a line per checkpoint
        for i, name in enumerate(checkpoints):
            mine = [r for r in rows if f"{r['run']} (epoch {r.get('epoch', '?')})" == name]
            ax.plot([r["eps"] for r in mine], [100 * r["robust"] for r in mine], marker="o", label=name,
                    **line_style(i))
        ax.set_xlabel("eps")
        ax.set_ylabel("robust test accuracy (%)")
        stem = root / "robust_accuracy_vs_eps"
    else:  # accuracy against checkpoint
        metrics = [m for m in ("natural", "robust", "test/acc", "error") if any(m in r for r in rows)]
        for i, metric in enumerate(metrics):
            values = [100 * (1 - r[metric]) if metric == "error" else 100 * r[metric] for r in rows if metric in r]
            ax.plot(range(len(values)), values, marker="o", label="accuracy" if metric == "error" else metric,
                    **line_style(i))
        ax.set_xticks(range(len(rows)), [f"{r['run']}\nepoch {r.get('epoch', '?')}" for r in rows], fontsize=7)
        ax.set_ylabel("test accuracy (%)")
        stem = root / "accuracy_vs_checkpoint"
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, stem)
