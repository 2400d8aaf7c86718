"""What makes two runs the same run: a config compared without the keys whose roles
(:mod:`sat.config.roles`) say they cannot change it.

- :func:`config_fingerprint`: a hash of a resolved config without its per-process keys
  (their output folders, a node's local data folder, thread counts). Every rank of a
  distributed run computes it at start; ranks that do not agree (a different ``seed``,
  ``optimizer.lr``, ``noise.rate``...) are refused by :func:`check_fingerprints` instead
  of training something else, or hanging.
- :func:`check_same_run`: a finished run folder is that command's result only if its
  stored config says what the command says, neutral keys aside (file locations count:
  two noise files are two experiments).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sat.config.flat import flatten
from sat.config.roles import NEUTRAL, PER_PROCESS, Roles, covers, with_role
from sat.errors import UserError


def _without(config: Mapping[str, Any], roles: Mapping[str, Roles], *role: str) -> dict[str, Any]:
    ignored = with_role(roles, *role)
    return {k: v for k, v in flatten(config).items() if not covers(ignored, k)}


def config_fingerprint(config: Mapping[str, Any], roles: Mapping[str, Roles]) -> str:
    """A short hash of a *resolved* config (plain values) without its per-process keys."""
    text = json.dumps(_without(config, roles, PER_PROCESS), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_fingerprints(fingerprints: Sequence[str]) -> None:
    """``fingerprints[r]``: rank r's :func:`config_fingerprint`. A one-line UserError naming
    the ranks whose settings differ from rank 0's."""
    others = [rank for rank, f in enumerate(fingerprints) if f != fingerprints[0]]
    if others:
        raise UserError(f"the {len(fingerprints)} processes of this distributed run were started with different "
                        f"settings (rank(s) {', '.join(map(str, others))} differ from rank 0: config hash "
                        f"{fingerprints[others[0]]} vs {fingerprints[0]}); accepted: one command for every process "
                        "(only the per-process settings may differ: paths, dataset.root, loader.num_workers, "
                        "trainer.num_threads, trainer.progress)")


def differing_settings(now: Mapping[str, Any], stored: Mapping[str, Any], roles: Mapping[str, Roles]) -> list[str]:
    """``key (stored -> now)`` for every setting that differs, the neutral keys aside."""
    a, b = _without(stored, roles, NEUTRAL), _without(now, roles, NEUTRAL)
    return [f"{k} ({a.get(k, '<unset>')} -> {b.get(k, '<unset>')})" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]


def check_same_run(now: Mapping[str, Any], stored: Mapping[str, Any], folder: Any, roles: Mapping[str, Roles]) -> None:
    """Refuse to report the finished run in ``folder`` as the result of a command whose
    settings differ from the ones it was trained with."""
    changed = differing_settings(now, stored, roles)
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise UserError(f"run folder {folder} holds a finished run with other settings: {shown}; accepted: the "
                        "run's own settings (its .hydra/config.yaml), or another folder for this run")
