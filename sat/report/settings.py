"""A run's *settings*: its stored config, resolved and flattened to ``key.path -> value``,
without the values that cannot change its results.

Runs are grouped by the settings that differ between them, so a setting kept here that
does not change results (a path, the device, a thread count) would split one
experiment into groups, and a setting dropped here that does change them would average
different experiments together.
"""

from __future__ import annotations

import json
import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Config nodes and keys that do not change what a run computes: where files go, where
# and how fast it runs, what it logs, how often it saves.
IGNORED_NODES = ("paths", "hydra", "logger")
IGNORED_KEYS = frozenset({
    "name", "device", "resume", "trusted_packages",
    "trainer.num_threads", "trainer.eval_batch_size", "trainer.compile", "trainer.channels_last",
    "trainer.checkpoint_every", "trainer.checkpoint_from", "trainer.progress",
    "dataset.download",  # (dataset.root stays: runs on other data are other experiments)
})
# The settings that repeat an experiment rather than define one: averaged over, never a group.
SEED_KEYS = ("seed",)

# ``${other.key}`` or ``${oc.select:other.key,default}``: a value that only repeats another
# setting (``noise.seed: ${seed}``, ``method.width: ${model.width}``, co-teaching's
# ``forget_rate: ${oc.select:noise.rate,null}``). Other resolvers (``${oc.env:X}``) are not.
_NODE_INTERPOLATION = re.compile(r"^\$\{(?:oc\.select:)?([^${},:]+)(,[^${}]*)?\}$")
# Any resolver call but oc.select (``${oc.env:SECRET}``, ``${hydra:...}``): never run on a
# stored config, whose text comes from whoever wrote the folder.
_RESOLVER_CALL = re.compile(r"\$\{\s*(?!oc\.select\s*:)([A-Za-z_][\w.]*)\s*:")


def disarm(tree: Any) -> Any:
    """A stored config (plain containers) whose resolver calls other than ``oc.select``
    are escaped: resolving it reads no environment variable and calls nothing, and such
    a value keeps its text."""
    if isinstance(tree, dict):
        return {k: disarm(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [disarm(v) for v in tree]
    return _RESOLVER_CALL.sub(r"\\${\1:", tree) if isinstance(tree, str) else tree


def load_stored_config(path: Any) -> DictConfig:
    """``.hydra/config.yaml`` (or any stored config), disarmed (:func:`disarm`)."""
    return OmegaConf.create(disarm(OmegaConf.to_container(OmegaConf.load(path), resolve=False)))


def is_ignored(key: str, also: tuple[str, ...] = ()) -> bool:
    """Whether ``key`` is left out of the settings (``also``: the user's own additions,
    keys or whole nodes)."""
    return any(key == k or key.startswith(f"{k}.") for k in (*IGNORED_NODES, *IGNORED_KEYS, *also))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"method": {"alpha": 0.9}}`` -> ``{"method.alpha": 0.9}``; lists become their JSON
    text so that every value can be compared and hashed."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple, dict)):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def read_settings(cfg: DictConfig) -> tuple[dict[str, Any], frozenset[str]]:
    """``(settings, derived)`` of a run's stored config (``.hydra/config.yaml``).

    ``settings``: every leaf except the ignored ones, interpolations resolved where they
    can be outside the run (``${seed}`` can, ``${hydra:...}`` cannot: such a leaf keeps its
    text). ``derived``: the keys whose value is an interpolation of another setting; they
    never tell runs apart on their own (``noise.seed: ${seed}`` varies with the seed).
    """
    cfg = OmegaConf.create(disarm(OmegaConf.to_container(cfg, resolve=False)))  # whoever calls: never ${oc.env:...}
    raw = flatten(OmegaConf.to_container(cfg, resolve=False))
    settings: dict[str, Any] = {}
    derived = set()
    for key, value in raw.items():
        if is_ignored(key):
            continue
        if isinstance(value, str) and "${" in value:
            match = _NODE_INTERPOLATION.match(value)
            if match and not is_ignored(match[1]):  # repeats a setting (not a path: paths are ignored)
                derived.add(key)
            value = _resolve(cfg, key, value)
        settings[key] = value
    return settings, frozenset(derived)


def _resolve(cfg: Any, key: str, text: str) -> Any:
    try:
        value = OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
    except Exception:  # a resolver that exists only inside the run (hydra:, a project resolver)
        return text
    if OmegaConf.is_config(value):
        return json.dumps(OmegaConf.to_container(value, resolve=False))
    return value
