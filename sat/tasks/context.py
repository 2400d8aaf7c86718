"""The Hydra run a task is part of: its group choices, its number and label within a
sweep, and the config as plain data."""

from __future__ import annotations

import os
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

SWEPT_KEYS = "SAT_SWEPT_KEYS"  # the keys a command line sweeps, for the jobs (also in launcher processes)
IGNORED_KEYS = "SAT_IGNORED_KEYS"  # a sweep's method keys this job's method does not take (sat.cli.method_keys)


def plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def job_num() -> int | None:
    """This job's number within a multirun sweep (None outside one)."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return hc.job.num if str(hc.mode) == "RunMode.MULTIRUN" else None


def choices() -> dict[str, str]:
    """The group options Hydra picked (``method: sat``), when running under Hydra."""
    if not HydraConfig.initialized():
        return {}
    return {k: str(v) for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra")}


def packages_used(config: dict[str, Any]) -> list[str]:
    """The top-level packages of every ``_target_`` a config names (recorded with a run,
    so ``trusted_packages=`` can be given when its checkpoints are read back)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("_target_"), str):
                found.add(node["_target_"].split(".", 1)[0])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk({k: v for k, v in config.items() if k != "hydra"})
    return sorted(found)


def sweep_job(hydra: Any) -> str:
    """What names a sweep job in its log lines and end-of-run box, from Hydra's node:
    `` [job 3 model.width=8 seed=1]`` (its number and the values of the swept keys, from
    the command line or ``hydra.sweeper.params``); nothing outside a sweep."""
    if not str(OmegaConf.select(hydra, "mode", default="")).endswith("MULTIRUN"):
        return ""
    params = OmegaConf.select(hydra, "sweeper.params", default=None) or {}
    swept = set(params) | set(filter(None, os.environ.get(SWEPT_KEYS, "").split(",")))
    values = [o for o in OmegaConf.select(hydra, "overrides.task", default=[]) or []
              if o.lstrip("+~").partition("=")[0] in swept]
    return f" [job {OmegaConf.select(hydra, 'job.num')}{''.join(' ' + v for v in values)}]"


def current_sweep_job() -> str:
    """:func:`sweep_job` of the job running now (nothing outside Hydra or a sweep)."""
    return sweep_job(HydraConfig.get()) if HydraConfig.initialized() else ""
