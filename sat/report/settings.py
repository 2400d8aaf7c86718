"""A run's *settings*: its stored config, resolved and flattened to ``key.path -> value``,
without the values that cannot change its results (the neutral keys, by their roles:
:mod:`sat.config.roles`).

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

from sat.config.build import StoredConfig
from sat.config.flat import flatten
from sat.config.roles import NEUTRAL, covers, with_role
from sat.config.schema import TrainConfig
from sat.config.versions import as_today
from sat.run.records import read_record

# The settings that repeat an experiment rather than define one: averaged over, never a group.
SEED_KEYS = ("seed",)

# ``${other.key}`` or ``${oc.select:other.key,default}``: a value that only repeats another
# setting (``noise.seed: ${seed}``, ``method.width: ${model.width}``, co-teaching's
# ``forget_rate: ${oc.select:noise.rate,null}``). Other resolvers (``${oc.env:X}``) are not.
_NODE_INTERPOLATION = re.compile(r"^\$\{(?:oc\.select:)?([^${},:]+)(,[^${}]*)?\}$")
# Any resolver call but oc.select (``${oc.env:SECRET}``, ``${hydra:...}``): never run on a
# stored config, whose text comes from whoever wrote the folder. Live where an even number
# of backslashes (none included) stands before it: OmegaConf reads two as one backslash;
# an odd number has escaped it already.
_RESOLVER_CALL = re.compile(r"(?<!\\)((?:\\\\)*)\$\{(\s*(?!oc\.select\s*:)[A-Za-z_][\w.]*\s*:)")


def disarm(tree: Any) -> Any:
    """A stored config (plain containers) whose resolver calls other than ``oc.select``
    are escaped: resolving it reads no environment variable and calls nothing, and such
    a value keeps its text. Idempotent: a call escaped already is left as it is."""
    if isinstance(tree, dict):
        return {k: disarm(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [disarm(v) for v in tree]
    return _RESOLVER_CALL.sub(r"\1\\${\2", tree) if isinstance(tree, str) else tree


def load_stored_config(path: Any) -> DictConfig:
    """``.hydra/config.yaml`` (or any stored config), disarmed (:func:`disarm`)."""
    return OmegaConf.create(disarm(OmegaConf.to_container(OmegaConf.create(read_record(path)), resolve=False)))


def read_settings(cfg: DictConfig) -> tuple[dict[str, Any], frozenset[str], frozenset[str]]:
    """``(settings, derived, neutral)`` of a run's stored config, as
    :func:`load_stored_config` read it.

    ``settings``: every leaf but the neutral ones, interpolations resolved where they can
    be outside the run (``${seed}`` can, ``${hydra:...}`` cannot: such a leaf keeps its
    text), lists and nodes as their JSON text so every value can be compared and hashed.
    ``derived``: the keys whose value is an interpolation of another setting; they never
    tell runs apart on their own (``noise.seed: ${seed}`` varies with the seed).
    ``neutral``: the neutral leaves left out.
    """
    cfg = OmegaConf.create(disarm(OmegaConf.to_container(cfg, resolve=False)))  # whoever calls (disarm is idempotent)
    tree = OmegaConf.to_container(cfg, resolve=False)
    neutral = frozenset(with_role(StoredConfig().roles(tree, TrainConfig), NEUTRAL))
    settings: dict[str, Any] = {}
    derived = set()
    flat = flatten(tree)
    # an older version's run as today's (a training run's config: the runs a report keeps)
    for key, value in as_today(flat, TrainConfig if "trainer.epochs" in flat else None).items():
        if covers(neutral, key):
            continue
        if isinstance(value, str) and "${" in value:
            match = _NODE_INTERPOLATION.match(value)
            if match and not covers(neutral, match[1]):  # repeats a setting (not a path: paths are neutral)
                derived.add(key)
            value = _resolve(cfg, key, value)
        settings[key] = json.dumps(value) if isinstance(value, (list, tuple, dict)) else value
    return settings, frozenset(derived), neutral


def _resolve(cfg: Any, key: str, text: str) -> Any:
    try:
        value = OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
    except Exception:  # a resolver that exists only inside the run (hydra:, a project resolver)
        return text
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=False)
    return value
