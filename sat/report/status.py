"""Which runs finished, and what became of the others: failed (with its error line),
preempted, running (or killed: a folder cannot tell), stopped before training, and
the jobs of a sweep's grid that have no folder yet."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sat.report.runs import STATUS_LABELS, Run
from sat.report.tables import first_line, relative

NOT_STARTED = "not started"
ORDER = (*STATUS_LABELS, NOT_STARTED)


def status_counts(runs: list[Run], not_started: list[tuple[Path, list[str]]]) -> dict[str, int]:
    """``status -> count`` (only the statuses that occur, in a fixed order)."""
    counts = Counter(r.status for r in runs)
    counts[NOT_STARTED] = len(not_started)
    return {s: counts[s] for s in ORDER if counts[s]}


def status_lines(runs: list[Run], not_started: list[tuple[Path, list[str]]], root: Path) -> list[str]:
    """A count line, then one line per run that did not finish and per job not started."""
    counts = status_counts(runs, not_started)
    lines = ["runs: " + ", ".join(f"{n} {STATUS_LABELS.get(s, s)}" for s, n in counts.items())]
    for r in sorted(runs, key=lambda r: (ORDER.index(r.status), str(r.path))):
        if r.finished:
            continue
        where = relative(r.path, root)
        if r.status == "failed":
            detail = first_line(r.error) or "no error recorded"
        else:
            total = r.summary.get("epochs", r.settings.get("trainer.epochs", "?"))
            detail = f"epoch {r.epochs_done} of {total} logged"
        lines.append(f"  {STATUS_LABELS[r.status]}: {where}: {detail}")
    for sweep_root, job in not_started:
        lines.append(f"  {NOT_STARTED}: {relative(sweep_root, root)}: {' '.join(job)}")
    return lines
