"""Every refusal of every option of conf/method, dataset, noise, model, augment, attack and
report names its keys from the config's root (issue 26: the library names its own
argument, the task that built the object adds the node's path, no text is rewritten).

Each argument of each option's node (nested parts too: TRADES' ``natural``, SAT's
``auto_start``) is set to bad values and the node is built as a run builds it
(``USER_CONFIG.build``); every refusal must be one line with no missing prefix (a bare
``alpha=`` of the node), no doubled one (``method.method.``) and no placeholder left
unrendered, and a structured refusal's key must lie under the node."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from sat.config import validate
from sat.config.build import USER_CONFIG
from sat.errors import UserError

CONF = Path(__file__).resolve().parents[2] / "conf"
# group -> (the config it is composed in, the kind its objects must be, what the task passes at build time)
GROUPS = {
    "method": ("train", "method", {}),
    "dataset": ("train", "dataset", {}),
    "noise": ("train", "noise", {}),
    "model": ("train", "model", {"num_classes": 10, "input_shape": (3, 32, 32)}),
    "augment": ("train", None, {}),
    "attack": ("attack", None, {}),
    "report": ("evaluate", None, {}),
}
# at least this many refusals per group: a walk that stopped finding them would pass vacuously
AT_LEAST = {"method": 120, "dataset": 90, "noise": 15, "model": 25, "augment": 40, "attack": 20, "report": 12}


def bad_values(value: Any) -> list[Any]:
    if isinstance(value, bool):
        return ["maybe", 2]
    if isinstance(value, int):
        return [-1, "abc"]
    if isinstance(value, float):
        return [-1.0, 1e9, "abc"]
    if isinstance(value, (list, ListConfig)):
        return [[-1.0], "abc"]
    return ["no-such-value", -1]


def leaves(node: DictConfig, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path inside the node, resolved value) of every argument, nested parts' included."""
    for key in node:
        if str(key).startswith("_"):
            continue
        value = None if OmegaConf.is_missing(node, key) else node[key]
        if isinstance(value, DictConfig) and "_target_" in value:
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", OmegaConf.to_object(value) if isinstance(value, (DictConfig, ListConfig)) \
                else value


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def composed(compose_cfg, group: str, option: str) -> DictConfig:
    config, _, _ = GROUPS[group]
    extra = {"train": [], "attack": ["checkpoint=x.pt"], "evaluate": ["checkpoint=x.pt"]}[config]
    node = compose_cfg(config, [f"{group}={option}", *extra])[group]
    # the node alone, its interpolations (${model.width}) resolved, under its own key: built as the run builds it
    return OmegaConf.create({group: OmegaConf.to_container(node, resolve=True) if node is not None else None})


def refusal(cfg: DictConfig, group: str, path: str, value: Any) -> UserError | None:
    """The UserError building ``cfg[group]`` with ``path`` set to ``value`` raises (None: built)."""
    _, kind, runtime = GROUPS[group]
    cfg = copy.deepcopy(cfg)
    OmegaConf.update(cfg, f"{group}.{path}", value, merge=False)
    try:
        with torch.device("meta"):  # a model is never allocated
            USER_CONFIG.build(cfg[group], group, kind, **runtime)
    except UserError as e:
        return e
    return None


def check_names(error: UserError, group: str, arguments: set[str]) -> None:
    message = str(error)
    assert "\n" not in message, message
    assert not re.search(r"\{(key|\.[A-Za-z_])", message), f"a placeholder left: {message}"
    assert not re.search(r"(?<![\w.])(\w+)\.\1\.", message), f"a doubled prefix: {message}"
    if error.structured:
        assert error.name.startswith(f"{group}.") and message.count(error.name) >= 1, message
    for name in arguments:  # an argument of the node named without the node's path
        bare = re.search(rf"(?<![\w.\[/<'-]){re.escape(name)}(?=\s*(=|<|>|\[))", message)
        assert bare is None, f"{name!r} without its path in: {message}"


@pytest.mark.parametrize("group", list(GROUPS))
def test_every_refusal_names_its_key_from_the_config_root(compose_cfg, group):
    seen = 0
    for option in options(group):
        cfg = composed(compose_cfg, group, option)
        node = cfg[group]
        if node is None:  # augment=none
            continue
        arguments = {path.rpartition(".")[2] for path, _ in leaves(node)}
        target = node.get("_target_")
        if target is not None and USER_CONFIG.class_of(target) is not None:
            arguments |= validate.argument_names(USER_CONFIG.class_of(target)) or set()
        for path, value in leaves(node):
            for bad in bad_values(value):
                error = refusal(cfg, group, path, bad)
                if error is not None:
                    check_names(error, group, arguments)
                    seen += 1
    assert seen >= AT_LEAST[group], f"only {seen} refusals of {group} options were seen"


def test_a_nested_part_is_named_through_its_owner(compose_cfg):
    """The exact name where the value was given: the walk above checks the prefix only."""
    cfg = composed(compose_cfg, "method", "trades_sat")
    assert str(refusal(cfg, "method", "natural.alpha", 1.5)).startswith("method.natural.alpha=1.5 is out of range")
    cfg = composed(compose_cfg, "method", "sat")
    assert str(refusal(cfg, "method", "auto_start.patience", 0)).startswith("method.auto_start.patience=0 ")
    cfg = composed(compose_cfg, "dataset", "clothing1m")
    assert str(refusal(cfg, "dataset", "train.labels", "exif")).startswith("dataset.train.labels='exif' ")
    assert str(refusal(cfg, "dataset", "resize", 8)) == (
        "dataset.resize=8 is smaller than dataset.image_size=224; accepted: dataset.resize >= dataset.image_size "
        "(images are resized, then centre-cropped to dataset.image_size)")
