"""Reading run folders into plain values: one :class:`Run` per folder that holds
``.hydra/config.yaml``, with its status, settings, group choices, seed, per-epoch
metrics and summary. Nothing here groups, plots or prints.

What a run folder holds (written by ``train.py``):

- ``.hydra/config.yaml`` (the composed config), ``.hydra/overrides.yaml`` (the job's
  overrides), ``.hydra/hydra.yaml`` (``hydra.runtime.choices``: the group options);
- ``metrics.jsonl``: one JSON object per completed epoch (``epoch``, 1-based, and
  metrics such as ``train/error``, ``val/acc``, ``test/acc``);
- ``summary.json``: written when the run starts with ``"status": "running"`` and
  rewritten when it ends (``finished``, ``failed`` with ``error``, ``preempted``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sat.config.roles import covers
from sat.errors import UserError
from sat.report.settings import SEED_KEYS, disarm, load_stored_config, read_settings
from sat.run.lock import held
from sat.run.records import read_record

# A run's status and how the report names it. A summary that says "running" is told
# apart by the folder's lock: running while a process holds it, killed (without a word:
# OOM, node lost, kill -9) when none does. A folder without summary.json stopped before
# training began.
STATUS_LABELS = {
    "finished": "finished",
    "failed": "failed",
    "preempted": "preempted (resumable)",
    "running": "running",
    "killed": "killed (no process holds its lock; resumable from its last checkpoint)",
    "unknown": "no summary.json (stopped before training began)",
}


@dataclass
class Run:
    """One run folder, as plain values. Metrics are fractions, as the run logged them."""

    path: Path
    status: str  # a key of STATUS_LABELS
    seed: Any
    settings: dict[str, Any]  # resolved config values that can change results (seed excluded)
    derived: frozenset[str]  # settings that only repeat another one (``noise.seed: ${seed}``)
    neutral: frozenset[str]  # the config's neutral keys (not among the settings)
    choices: dict[str, str]  # group -> option (``method: sat``)
    overrides: tuple[str, ...]  # the job's overrides, as Hydra recorded them
    name: str | None = None  # the config's ``name`` (the experiment)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)  # metrics.jsonl, one dict per epoch

    def is_neutral(self, key: str) -> bool:
        """A neutral key, or a node (a group: ``logger``) whose every key is neutral."""
        if covers(self.neutral, key):
            return True
        return any(k.startswith(f"{key}.") for k in self.neutral) and \
            not any(k.startswith(f"{key}.") for k in self.settings)

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def error(self) -> str | None:
        return self.summary.get("error")

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's metrics (from the summary of a finished run, else the last logged epoch)."""
        return self.summary.get("final") or (self.history[-1] if self.history else {})

    @property
    def at_best_val(self) -> dict[str, float] | None:
        """``{"epoch", "val/acc", "test/acc"}`` at the epoch of best validation accuracy;
        None without a validation split."""
        if "at_best_val" in self.summary:
            return self.summary["at_best_val"]
        return self.summary.get("best")  # its name in summaries of older sat versions

    @property
    def params(self) -> int | None:
        return self.summary.get("params")

    @property
    def effective(self) -> dict[str, Any]:
        """The method's hyper-parameters as the run used them (after width scaling)."""
        return self.summary.get("method") or {}

    @property
    def epochs(self) -> list[int]:
        return [int(m["epoch"]) for m in self.history]

    @property
    def epochs_done(self) -> int:
        """Completed epochs: the summary's count, or the log's where it is ahead (a
        running run's summary is the one written at its start)."""
        return max(int(self.summary.get("epochs_done") or 0), self.epochs[-1] if self.epochs else 0)

    def curve(self, metric: str) -> list[float]:
        """``metric`` per logged epoch (NaN where an epoch lacks it); ``<split>/error``
        falls back to ``1 - <split>/acc``."""
        return [metric_value(m, metric) for m in self.history]

    def value(self, column: str) -> Any:
        """A group option (``method``) or a setting (``noise.rate``); None when the run lacks it."""
        return self.choices[column] if column in self.choices else self.settings.get(column)


def metric_value(metrics: dict[str, Any], name: str) -> float:
    if name in metrics and metrics[name] is not None:
        return float(metrics[name])
    split, _, kind = name.partition("/")
    if kind == "error" and metrics.get(f"{split}/acc") is not None:
        return 1.0 - float(metrics[f"{split}/acc"])
    return math.nan


# --- reading ----------------------------------------------------------------------------


def read_runs(root: str | Path) -> list[Run]:
    """Every training run below ``root`` (``root`` itself may be one), in path order."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; give a sweep folder (multirun/<name>/<date>/<time>) or a run folder")
    found = [read_run(p.parent.parent) for p in sorted(root.rglob(".hydra/config.yaml"))]
    runs = [r for r in found if "trainer.epochs" in r.settings]  # not the outputs of evaluate.py / attack.py
    if not runs:
        raise UserError(f"no runs below {root}: expected folders holding .hydra/config.yaml "
                        "(a sweep folder multirun/<name>/<date>/<time> or a run folder)")
    return runs


def read_run(path: Path) -> Run:
    """Read one run folder; each of its files once."""
    hydra_dir = path / ".hydra"
    config = load_stored_config(hydra_dir / "config.yaml")  # never resolves ${oc.env:...} of a folder's text
    settings, derived, neutral = read_settings(config)
    summary = _read_summary(path / "summary.json")
    seed = next((settings.pop(k) for k in SEED_KEYS if k in settings), summary.get("seed"))
    status = _status(summary)
    if status == "running" and not held(path):
        status = "killed"
    return Run(
        path=path, status=status, seed=seed, settings=settings, derived=derived, neutral=neutral,
        choices=_choices(hydra_dir / "hydra.yaml", summary), overrides=_overrides(hydra_dir / "overrides.yaml"),
        name=OmegaConf.select(config, "name", default=None) or summary.get("name"),
        summary=summary, history=_read_history(path / "metrics.jsonl"),
    )


def _read_summary(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:  # cut off by a kill while it was written
        return {"status": "unknown", "error": f"{path.name} is not valid JSON (cut off while written?)"}


def _status(summary: dict[str, Any]) -> str:
    if not summary:
        return "unknown"
    if "status" not in summary:  # summaries of older sat versions were written only when a run finished
        return "finished"
    return summary["status"] if summary["status"] in STATUS_LABELS else "unknown"


def _read_history(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:  # the last line of a run killed while writing it
            continue
    return [m for m in lines if isinstance(m, dict) and "epoch" in m]


def _choices(hydra_file: Path, summary: dict[str, Any]) -> dict[str, str]:
    """The group options Hydra picked (``hydra.runtime.choices``), without Hydra's own
    groups and relocated ones (``method_tuning@method`` follows from the others)."""
    found = OmegaConf.select(load_stored_config(hydra_file), "hydra.runtime.choices", default=None) \
        if hydra_file.is_file() else None
    choices = OmegaConf.to_container(found) if found is not None else (summary.get("choices") or {})
    return {k: "null" if v is None or v == "None" else str(v) for k, v in choices.items()
            if not k.startswith("hydra") and "@" not in k}


def _overrides(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        return ()
    stored = OmegaConf.to_container(OmegaConf.create(read_record(path)))
    return tuple(str(o) for o in disarm(stored)) if isinstance(stored, list) else ()
