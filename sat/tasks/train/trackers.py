"""The trackers a run writes to, as the ``logger`` group selects them: one
(``logger=tensorboard``), several at once (``logger=[tensorboard,csv]``, Hydra's list
selection of a group) or none (``logger=none``).

Each file of conf/logger/ nests its node under its own name (``logger.tensorboard``,
``logger.wandb.project``; lightning-hydra-template's convention), so that a list of them
composes into one node that holds each, where flat files would overwrite each other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sat.config.build import USER_CONFIG
from sat.errors import UserError
from sat.run.loggers import Tracker, Trackers
from sat.tasks.context import choices

MakeTracker = Callable[..., Tracker]  # (out_dir, first_epoch=...) -> a tracker


def selected(cfg: DictConfig) -> dict[str, Any]:
    """The tracker nodes ``logger`` selects, by name, in order (empty for ``logger=none``)."""
    node = cfg.get("logger")
    if node is None:
        return {}
    if "_target_" in node:  # a tracker node written flat (a config of the user's own)
        return {choices().get("logger", "logger"): node}
    found = {}
    for name, child in node.items():
        if not isinstance(child, DictConfig) or "_target_" not in child:
            raise UserError(key=f"logger.{name}", problem="is not a tracker node (no _target_)",
                            accepted="a tracker's setting under its name (logger.tensorboard.flush_secs=...); "
                                     "trackers: logger=tensorboard, csv, wandb, none, or a list: logger=[tensorboard,csv]")
        found[str(name)] = child
    return found


def tracker_factory(cfg: DictConfig) -> Callable[[str | Path, int | None], Tracker] | None:
    """Every selected tracker's factory, built now (a bad value refused before training);
    None when none is selected. The factory makes them all, as one tracker."""
    flat = "_target_" in (cfg.get("logger") or {})
    makers: list[MakeTracker] = [USER_CONFIG.build(node, "logger" if flat else f"logger.{name}")
                                 for name, node in selected(cfg).items()]
    if not makers:
        return None

    def make(out_dir: str | Path, first_epoch: int | None = None) -> Tracker:
        made: list[Tracker] = []
        try:
            for maker in makers:
                made.append(maker(out_dir, first_epoch=first_epoch))
        except BaseException:
            Trackers(made).close()  # the ones already open
            raise
        return made[0] if len(made) == 1 else Trackers(made)

    return make
