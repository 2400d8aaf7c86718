"""From a person's decisions about suspected label errors to the labels a run trains on.

A *decisions file* is what the review page (``label_errors.html``) exports:
``label_decisions.csv`` with the columns ``sample_id,decision,new_label`` (decision
``relabel``, ``remove`` or ``keep``; ``new_label`` the class a relabelled sample gets),
or the same rows as JSON (``{"decisions": [{"sample_id": .., "decision": .., "new_label": ..}]}``).
A ``label_errors.csv`` is accepted too: then every suspect whose ``suspicion`` is at
least ``min_suspicion`` takes one decision for all (relabel to its suggested label, or
remove), which is "accept the detector's suggestions above a score".

:func:`read_decisions` reads and checks a file (before any run is read);
:func:`apply_decisions` applies the decisions to a run's labels: relabelled samples get
their new label, removed ones are listed to be left out of training, and only training
samples may be decided (the validation samples keep their given labels). Errors name
the file and its line, under the argument ``decisions`` (the task adds its config path).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sat.errors import UserError

DECISIONS = ("relabel", "remove", "keep")
DECISION_COLUMNS = ("sample_id", "decision", "new_label")
SUSPECT_DECISIONS = ("relabel", "remove")  # what every suspect of a label_errors.csv may get
ACCEPTED_FILES = "a label_decisions.csv/.json exported by label_errors.html, or a label_errors.csv"


@dataclass(frozen=True)
class Decisions:
    """Per sample id: the new label of each relabelled sample, the removed and the kept
    ones; ``rule``: how they were made; ``file`` and ``sha256``: the file they came from;
    ``lines``: where in it each sample was decided (for the errors found later)."""

    relabel: dict[int, int] = field(default_factory=dict)
    remove: tuple[int, ...] = ()
    keep: tuple[int, ...] = ()
    rule: str = "decisions"
    file: str = ""
    sha256: str = ""
    lines: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.relabel) + len(self.remove) + len(self.keep)

    def record(self) -> dict[str, Any]:
        """Where labels made from these decisions came from (plain values, kept in the
        cleaned labels' file and shown in the summary of a run on them)."""
        return {"rule": self.rule, "decisions": self.file, "decisions_sha256": self.sha256,
                "relabelled": len(self.relabel), "removed": len(self.remove), "kept": len(self.keep)}


def _refused(path: Any, problem: str, accepted: str) -> UserError:
    return UserError(key="decisions", value=str(path), problem=problem, accepted=accepted)


def read_decisions(path: str | Path, *, min_suspicion: float | None = None,
                   suspect_decision: str = "relabel") -> Decisions:
    """The decisions of ``path`` (a decisions CSV or JSON, or a ``label_errors.csv``
    with ``min_suspicion`` and ``suspect_decision``), every bad row one
    :class:`UserError` naming its line. Class labels are checked against the run's
    classes by :func:`apply_decisions`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise _refused(path, "does not exist", ACCEPTED_FILES)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _refused(path, "is not UTF-8 text", "a CSV or JSON file") from None
    made = {"file": str(path.resolve()), "sha256": hashlib.sha256(raw).hexdigest()}
    if path.suffix.lower() == ".json":
        rows, first, unit = _json_rows(text, path), 1, "entry"
    else:
        reader = csv.DictReader(text.splitlines())
        columns = set(reader.fieldnames or ())
        if {"suggested_label", "suspicion"} <= columns and "decision" not in columns:
            return _accept_suggestions(reader, path, min_suspicion, suspect_decision, made)
        missing = [c for c in ("sample_id", "decision") if c not in columns]
        if missing:
            raise _refused(path, f"has no {' or '.join(missing)} column (columns: {', '.join(sorted(columns)) or 'none'})",
                           f"a CSV with the columns {','.join(DECISION_COLUMNS)}, or a label_errors.csv")
        rows, first, unit = list(reader), 2, "line"
    if min_suspicion is not None:
        raise UserError(key="min_suspicion", value=min_suspicion,
                        problem=f"applies to a label_errors.csv, but {path} holds decisions",
                        accepted="{key}=null with a decisions file")
    relabel: dict[int, int] = {}
    remove, keep, lines = [], [], {}
    for number, row in enumerate(rows, start=first):
        at = f"{unit} {number}"
        sample = _integer(row.get("sample_id"), path, f"{at}: sample_id")
        if sample in lines:
            raise _refused(path, f"at {at}: sample {sample} is decided twice", "one decision per sample")
        lines[sample] = at
        decision = str(row.get("decision") or "").strip().lower()
        if decision not in DECISIONS:
            raise _refused(path, f"at {at}: decision {row.get('decision')!r} is not supported", ", ".join(DECISIONS))
        if decision == "relabel":
            relabel[sample] = _integer(row.get("new_label"), path, f"{at}: new_label")
        else:
            (remove if decision == "remove" else keep).append(sample)
    return Decisions(relabel, tuple(remove), tuple(keep), "decisions", lines=lines, **made)


def _json_rows(text: str, path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise _refused(path, f"is not JSON ({e})", "the JSON label_errors.html exports") from None
    rows = data.get("decisions") if isinstance(data, dict) else data
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise _refused(path, "holds no list of decisions",
                       '{"decisions": [{"sample_id": 3, "decision": "relabel", "new_label": 5}, ...]}')
    return rows


def _integer(value: Any, path: Path, what: str) -> int:
    text = "" if value is None else str(value).strip()
    try:
        return int(text)
    except ValueError:
        raise _refused(path, f"at {what} {text!r} is not an integer", "an integer") from None


def _accept_suggestions(reader: csv.DictReader, path: Path, min_suspicion: float | None, decision: str,
                        made: dict[str, str]) -> Decisions:
    """Every suspect of a label_errors.csv at or above ``min_suspicion`` (all of them for
    None): relabelled to its suggestion, or removed."""
    if decision not in SUSPECT_DECISIONS:
        raise UserError(key="suspect_decision", value=decision, problem="is not supported",
                        accepted=", ".join(SUSPECT_DECISIONS))
    threshold = -math.inf if min_suspicion is None else float(min_suspicion)
    chosen: dict[int, int] = {}
    lines: dict[int, str] = {}
    for number, row in enumerate(reader, start=2):
        at = f"line {number}"
        try:
            suspicion = float(row["suspicion"])
        except (TypeError, ValueError):
            raise _refused(path, f"at {at}: suspicion {row.get('suspicion')!r} is not a number",
                           "a label_errors.csv written by sat") from None
        if suspicion >= threshold:
            sample = _integer(row.get("sample_id"), path, f"{at}: sample_id")
            chosen[sample], lines[sample] = _integer(row.get("suggested_label"), path, f"{at}: suggested_label"), at
    rule = f"{decision} every suspect of {path.name}" + ("" if min_suspicion is None else f" with suspicion >= {threshold:g}")
    if decision == "relabel":
        return Decisions(chosen, (), (), rule, lines=lines, **made)
    return Decisions({}, tuple(chosen), (), rule, lines=lines, **made)


def apply_decisions(decisions: Decisions, *, num_classes: int, pool_ids: torch.Tensor, labels: torch.Tensor,
                    train_ids: torch.Tensor, val_ids: Iterable[int] = (),
                    removed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``labels`` (the run's given labels over its training pool, in the pool's order:
    ``pool_ids``) with the decisions applied, and the sample ids left out of training
    (``removed`` before, and the removed ones), sorted. Only training samples
    (``train_ids``) may be decided: the validation samples (``val_ids``) keep their given
    labels, so they stay an honest, equally noisy selection set."""
    position = {sample: at for at, sample in enumerate(pool_ids.tolist())}
    training, validation = set(train_ids.tolist()), {int(v) for v in val_ids}
    for sample in [*decisions.relabel, *decisions.remove, *decisions.keep]:
        if sample not in training:
            why = "a validation sample (its label stays as given)" if sample in validation else \
                "not a training sample of this run"
            raise _refused(decisions.file, f"at {decisions.lines.get(sample, 'a row')}: sample {sample} is {why}",
                           "the sample ids of the run's label_errors.csv")
    labels = labels.clone()
    for sample, label in decisions.relabel.items():
        if not 0 <= label < num_classes:
            raise _refused(decisions.file, f"at {decisions.lines.get(sample, 'a row')}: class {label} is out of range",
                           f"a class in [0, {num_classes})")
        labels[position[sample]] = label
    before = set() if removed is None else set(removed.tolist())
    return labels, torch.tensor(sorted(before | set(decisions.remove)), dtype=torch.int64)
