"""A method key on a sweep of several methods: ``train.py -m method=ce,sat method.alpha=0.95``.

Hydra gives every job every override, so the CE job would stop the whole sweep
(``method.alpha`` is not a key of CE's node). Here each job keeps the method keys its own
method takes (a key of its composed ``method`` node, nested ones included:
``method.natural.start_epoch``) and runs without the others: they are recorded in the job's
``hydra.job.env_set`` (the job logs that it ignores them; a hydra key never names a sweep
folder), and jobs that become the same are run once. A key that no method of the sweep
takes is refused in one line, as any unknown key (``method.alfa``: did you mean
``method.alpha``?), so a typo is still caught. :class:`hydra_plugins.sat_sweeper` calls
:func:`fit_method_keys` (the sweeper of conf/train.yaml).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

from omegaconf import DictConfig, OmegaConf

from sat.config.keys import unknown_key
from sat.tasks.context import IGNORED_KEYS

log = logging.getLogger("sat")

_ABSENT = object()


def _key(override: str) -> str:
    return override.partition("=")[0]


def _is_method_key(override: str) -> bool:
    """A plain value of a key under ``method`` (not ``+``/``~``: those add or delete on purpose)."""
    return "=" in override and not override.startswith(("+", "~")) and _key(override).startswith("method.")


def _composition(override: str) -> bool:
    """An override that can change which keys the ``method`` node has: a group choice
    (``method=ce``, ``auto_start@method.auto_start=x``), an added or deleted key."""
    key = _key(override)
    return override.startswith(("+", "~")) or "." not in key or "@" in key or "/" in key


def _has(cfg: DictConfig, key: str) -> bool:
    return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False) is not _ABSENT


def _keys_under(cfg: DictConfig, key: str) -> set[str]:
    parent = OmegaConf.select(cfg, key.rpartition(".")[0], default=None)
    return {str(k) for k in parent.keys() if not str(k).startswith("_")} if isinstance(parent, DictConfig) else set()


def fit_method_keys(jobs: Sequence[Sequence[str]], compose: Callable[[list[str]], DictConfig]) -> list[list[str]]:
    """``jobs`` (each a job's overrides) with every method key left only in the jobs whose
    method takes it (``compose(overrides)``: a job's config). A key no job takes raises the
    one-line error of an unknown key; identical jobs after the fit are run once."""
    if not any(_is_method_key(o) for job in jobs for o in job):
        return [list(job) for job in jobs]
    composed: dict[tuple[str, ...], DictConfig] = {}
    taken: set[str] = set()
    ignored_by: dict[str, set[str]] = {}  # method choice -> the keys its jobs run without
    fitted: list[list[str]] = []
    for job in jobs:
        base = [o for o in job if not _is_method_key(o)]
        shape = tuple(o for o in base if _composition(o))
        cfg = composed[shape] if shape in composed else composed.setdefault(shape, compose(base))
        kept = [o for o in job if not _is_method_key(o) or _has(cfg, _key(o))]
        ignored = [_key(o) for o in job if _is_method_key(o) and not _has(cfg, _key(o))]
        taken |= {_key(o) for o in kept if _is_method_key(o)}
        if ignored:
            kept.append(f"+hydra.job.env_set.{IGNORED_KEYS}='{' '.join(ignored)}'")
            choice = str(OmegaConf.select(cfg, "hydra.runtime.choices.method", default="?"))
            ignored_by.setdefault(choice, set()).update(ignored)
        fitted.append(kept)
    for key in sorted({_key(o) for job in jobs for o in job if _is_method_key(o)} - taken):
        raise unknown_key(key, set().union(*(_keys_under(cfg, key) for cfg in composed.values())))
    for choice, keys in sorted(ignored_by.items()):
        log.info("method=%s does not take %s: its jobs run without (the sweep's other methods take it)", choice,
                 ", ".join(sorted(keys)))
    unique = [job for i, job in enumerate(fitted) if job not in fitted[:i]]
    if len(unique) < len(fitted):
        log.info("%d jobs are the same once the keys their methods do not take are left out: each runs once",
                 len(fitted) - len(unique))
    return unique


def note_ignored_keys() -> None:
    """In a job of such a sweep: say which of the sweep's method keys this job's method ignores."""
    ignored = os.environ.get(IGNORED_KEYS, "").split()
    if ignored:
        log.info("this job's method does not take %s (set on the sweep for its other methods): ignored",
                 ", ".join(ignored))
