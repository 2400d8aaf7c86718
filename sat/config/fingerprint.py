"""What makes two runs the same run: a config compared without the values that cannot
change a result.

- :func:`config_fingerprint`: a hash of a resolved config without the keys that may
  differ between the processes of one distributed run (their output folders, a node's
  local data folder, thread counts). Every rank computes it at start; ranks that do not
  agree (a different ``seed``, ``optimizer.lr``, ``noise.rate``...) are refused by
  :func:`check_fingerprints` instead of training something else, or hanging.
- :func:`check_same_run`: a finished run folder is that command's result only if its
  stored config says what the command says (file locations included: two noise files
  are two experiments).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sat.errors import UserError

# May differ between the processes of one run: where each writes and reads files, and
# how fast it runs.
PER_PROCESS_KEYS = ("paths", "hydra", "dataset.root", "dataset.download", "dataset.num_workers", "trainer.progress",
                    "trainer.num_threads")
# Cannot change what a run computes (its folder, device, speed, logging, checkpoint cadence).
RESULT_NEUTRAL_KEYS = ("paths.output_dir", "hydra", "name", "device", "resume", "objective", "logger",
                       "trusted_packages", "dataset.download", "dataset.num_workers", "trainer.num_threads",
                       "trainer.progress", "trainer.async_checkpoint", "trainer.eval_batch_size", "trainer.compile",
                       "trainer.compile_mode", "trainer.checkpoint_every", "trainer.checkpoint_from")


def _is_ignored(key: str, ignore: Iterable[str]) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in ignore)


def flat_settings(config: Mapping[str, Any], ignore: Iterable[str] = ()) -> dict[str, Any]:
    """``{"method": {"alpha": 0.9}}`` -> ``{"method.alpha": 0.9}``, without the ``ignore``
    keys (and whole nodes); lists stay values."""
    ignore = tuple(ignore)
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        elif not _is_ignored(prefix[:-1], ignore):
            flat[prefix[:-1]] = node

    walk(config, "")
    return flat


def config_fingerprint(config: Mapping[str, Any], ignore: Sequence[str] = PER_PROCESS_KEYS) -> str:
    """A short hash of a *resolved* config (plain values) without the ``ignore`` keys."""
    text = json.dumps(flat_settings(config, ignore), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_fingerprints(fingerprints: Sequence[str]) -> None:
    """``fingerprints[r]``: rank r's :func:`config_fingerprint`. A one-line UserError naming
    the ranks whose settings differ from rank 0's."""
    others = [rank for rank, f in enumerate(fingerprints) if f != fingerprints[0]]
    if others:
        raise UserError(f"the {len(fingerprints)} processes of this distributed run were started with different "
                        f"settings (rank(s) {', '.join(map(str, others))} differ from rank 0: config hash "
                        f"{fingerprints[others[0]]} vs {fingerprints[0]}); accepted: one command for every process "
                        "(only paths, dataset.root, dataset.num_workers, trainer.num_threads, trainer.progress may differ)")


def differing_settings(now: Mapping[str, Any], stored: Mapping[str, Any],
                       ignore: Sequence[str] = RESULT_NEUTRAL_KEYS) -> list[str]:
    """``key (stored -> now)`` for every setting that differs, the ``ignore`` keys aside."""
    a, b = flat_settings(stored, ignore), flat_settings(now, ignore)
    return [f"{k} ({a.get(k, '<unset>')} -> {b.get(k, '<unset>')})" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]


def check_same_run(now: Mapping[str, Any], stored: Mapping[str, Any], folder: Any) -> None:
    """Refuse to report the finished run in ``folder`` as the result of a command whose
    settings differ from the ones it was trained with."""
    changed = differing_settings(now, stored)
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise UserError(f"run folder {folder} holds a finished run with other settings: {shown}; accepted: the "
                        "run's own settings (its .hydra/config.yaml), or another folder for this run")
