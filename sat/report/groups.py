"""Grouping runs by the settings that differ between them.

Two runs belong to one group when every setting that can change results is equal,
the seed aside: a group is one experiment repeated over seeds, and only a group's runs
are ever averaged. The settings that differ become the group's *columns*: a group option
(``method``, ``dataset``) or a setting (``noise.rate``, ``model.width``).

A setting inside a group whose option differs (``method.alpha`` when ``method=ce,sat``)
is a column only if it also differs between runs of the same option; otherwise the
option already tells the runs apart and the column would only repeat it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sat.config.roles import covers
from sat.report.runs import Run

# Column order: what is compared first, then what the data and model are.
_FIRST = ("method", "dataset", "model", "noise")


@dataclass
class Group:
    """Runs equal in every setting but the seed."""

    values: dict[str, Any]  # column -> this group's value (None: the runs lack that setting)
    runs: list[Run]

    @property
    def label(self) -> str:
        return label(self.values)

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.finished]


@dataclass
class Grouping:
    columns: list[str]  # what tells the groups apart, in display order
    groups: list[Group]


def label(values: dict[str, Any]) -> str:
    """``method=sat, noise.rate=0.2`` (the override syntax, so it reads like the command line)."""
    return ", ".join(f"{k}={fmt(v)}" for k, v in values.items()) or "all runs"


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def varying_columns(runs: list[Run], ignore: tuple[str, ...] = ()) -> list[str]:
    """The group options and settings that differ between ``runs`` (see the module doc)."""
    def ignored(key: str) -> bool:  # neutral in a run's config, or left out by the user
        return covers(ignore, key) or any(r.is_neutral(key) for r in runs)

    choice_keys = _union(r.choices for r in runs)
    # a group a run has no choice in (added since it ran) is one it did not use: null
    choices = [k for k in choice_keys if len({r.choices.get(k, "null") for r in runs}) > 1 and not ignored(k)]
    settings = []
    for key in _union(r.settings for r in runs):
        if key in choice_keys or ignored(key) or all(key in r.derived for r in runs if key in r.settings):
            continue
        if len({_hashable(r.settings.get(key)) for r in runs}) < 2:
            continue
        group = key.split(".", 1)[0]
        if group in choices and _follows_option(runs, group, key):
            continue
        settings.append(key)
    return sorted(choices + settings, key=_column_order)


def group_runs(runs: list[Run], ignore: tuple[str, ...] = ()) -> Grouping:
    """Runs grouped by every differing setting but the seed; groups and their runs sorted."""
    columns = varying_columns(runs, ignore)
    by_key: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        by_key[tuple(_hashable(run.value(c)) for c in columns)].append(run)
    groups = [Group({c: rs[0].value(c) for c in columns}, sorted(rs, key=lambda r: (sort_key(r.seed), str(r.path))))
              for rs in by_key.values()]
    groups.sort(key=lambda g: tuple(sort_key(v) for v in g.values.values()))
    return Grouping(columns, groups)


def common_values(runs: list[Run]) -> dict[str, Any]:
    """The group options and settings every run shares (options under their group's name)."""
    out: dict[str, Any] = {}
    for source in ("choices", "settings"):
        keys = _union(getattr(r, source) for r in runs)
        for key in keys:
            values = {_hashable(getattr(r, source).get(key, _MISSING)) for r in runs}
            if len(values) == 1 and _MISSING not in values and key not in out:
                out[key] = getattr(runs[0], source)[key]
    return out


def sort_key(value: Any) -> tuple:
    """Numbers in numeric order, then text, then missing values."""
    if value is None:
        return (2, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, str(value))


_MISSING = object()


def _follows_option(runs: list[Run], group: str, key: str) -> bool:
    """Whether ``key`` takes one value per option of ``group`` (so the option explains it)."""
    seen: dict[str, set] = defaultdict(set)
    for r in runs:
        seen[r.choices.get(group)].add(_hashable(r.settings.get(key)))
    return all(len(v) == 1 for v in seen.values())


def _union(dicts: Iterable[dict]) -> list[str]:
    """Keys of all dicts, first-seen order."""
    return list(dict.fromkeys(k for d in dicts for k in d))


def _hashable(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else repr(value)


def _column_order(column: str) -> tuple:
    top = column.split(".", 1)[0]
    rank = _FIRST.index(top) if top in _FIRST else len(_FIRST)
    return (rank, top, column.count("."), column)


def title(runs: list[Run]) -> str:
    """What every run shares, for a figure's title: ``dd_digits: digits, mlp, flip noise
    0.2, 600 epochs``. A setting that differs between the runs is left out."""
    common = common_values(runs)
    parts = []
    if "dataset" in common:
        parts.append(str(common["dataset"]))
    width = f"width {fmt(common['model.width'])}" if "model.width" in common else ""
    if "model" in common or width:
        parts.append(" ".join(x for x in (common.get("model"), width) if x))
    if "noise" in common or "noise.rate" in common:
        rate = fmt(common["noise.rate"]) if "noise.rate" in common else ""
        parts.append(" ".join(x for x in (common.get("noise"), "noise", rate) if x))
    if "method" in common:
        parts.append(str(common["method"]))
    if "trainer.epochs" in common:
        parts.append(f"{common['trainer.epochs']} epochs")
    names = {r.name for r in runs}
    head = str(names.pop()) if len(names) == 1 and None not in names else ""
    return f"{head}: {', '.join(parts)}" if head and parts else head or ", ".join(parts)
