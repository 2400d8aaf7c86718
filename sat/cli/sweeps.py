"""Names of sweep job folders, from what each job sets and each key's roles
(:mod:`sat.config.roles`): a neutral key never names a folder, a key naming files
contributes a hash of its value (``+files-1a2b3c4d``), every other key its value. No
``=`` or ``,`` in a name: every path pastes unquoted into ``checkpoint=``, ``resume=``
or ``python -m sat.report``.

- training (``train.py -m``): ``method-sat+model.width-64+seed-2``, Hydra's
  ``override_dirname`` convention with the seed last, so seeds of one setting sit
  side by side;
- evaluation and attacks (``evaluate.py -m``, ``attack.py -m``): the keys the sweep
  varies, by their last part, a checkpoint by its run's folder and file, in one short
  level: ``r2.last+eps-8_255``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from sat.config.build import USER_CONFIG
from sat.config.roles import FILE, NEUTRAL, Roles
from sat.errors import UserError
from sat.run.folder import RunFolder
from sat.run.records import read_record
from sat.tasks.context import SWEPT_KEYS

IN_SWEEP_PATH = ("experiment", "seed")  # already in a job's path (the sweep's name; the seed goes last)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _key(override: str) -> str:
    """``+trainer.x=1`` -> ``trainer.x``; ``~noise`` -> ``noise``."""
    return str(override).lstrip("+~").partition("=")[0]


def roles_of(root: Any, keys: Iterable[str]) -> dict[str, Roles]:
    """The roles of ``keys`` in the job's composed config ``root`` (a key below a node
    with roles, or a group choice, gets its node's)."""
    if not isinstance(root, DictConfig):
        return {}
    config = OmegaConf.to_container(root, resolve=False)
    config.pop("hydra", None)
    schema = OmegaConf.get_type(root)
    everything = USER_CONFIG.roles(config, schema if schema is not dict else None)
    out = {}
    for key in keys:
        below = [r for k, r in everything.items() if k == key or k.startswith(f"{key}.")]
        out[key] = frozenset.intersection(*below) if below else frozenset()
    return out


def _files_hash(overrides: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(overrides)).encode()).hexdigest()[:8]


def sweep_subdir(overrides: Any, seed: Any, *, _root_: Any = None, named_anyway: Iterable[str] = ()) -> str:
    """A training sweep job's folder: its overrides (sorted, ``=`` as ``-``, joined by
    ``+``) but neutral keys and the seed, then the seed, then ``+files-<hash>`` of the
    overrides that name files (``noise.from_file=A.pt,B.pt`` makes two folders).
    ``named_anyway``: neutral keys that name the folder all the same (a search's objective)."""
    overrides = [str(o) for o in overrides or []]
    roles = roles_of(_root_, {_key(o) for o in overrides})
    named, files = [], []
    for override in overrides:
        key, have = _key(override), roles.get(_key(override), frozenset())
        if FILE in have:
            files.append(override.lstrip("+~"))
        elif (NEUTRAL not in have or key in named_anyway) and key not in IN_SWEEP_PATH and key != "hydra" \
                and not key.startswith("hydra."):
            named.append(override)
    name = "+".join(o.replace("=", "-") for o in sorted(named))
    name = f"{name}+seed-{seed}" if name else f"seed-{seed}"
    return f"{name}+files-{_files_hash(files)}" if files else name


def swept_keys(sweep_dir: str | Path) -> set[str]:
    """The keys a sweep varies (``a,b``, ``range(...)`` ... on its command line or in
    ``hydra.sweeper.params``), from the ``multirun.yaml`` Hydra writes before any job."""
    try:
        sweep = yaml.safe_load(read_record(Path(sweep_dir) / "multirun.yaml"))["hydra"]
    except (OSError, yaml.YAMLError, KeyError, TypeError, UserError):
        return set()
    keys = set((sweep.get("sweeper") or {}).get("params") or {})
    for override in (sweep.get("overrides") or {}).get("task") or []:
        key, _, value = str(override).lstrip("+~").partition("=")
        if re.search(r",|^\w+\(", value):
            keys.add(key)
    return keys


def _checkpoint_name(value: str) -> str:
    """``.../<run>/checkpoints/epoch_3.pt`` -> ``<run>.epoch_3``; a run folder -> ``<run>``."""
    path = Path(value.strip("'\""))
    if path.suffix == ".pt":
        return f"{RunFolder.name_of_checkpoint(path)}.{path.stem}"
    return path.name


def job_name(overrides: Any, sweep_dir: str | None = None, *, _root_: Any = None) -> str:
    """An evaluation or attack sweep job's folder name from its overrides (Hydra's
    ``hydra.overrides.task``): those the sweep varies (all of them where that is
    unknown), ``key-value`` by the key's last part, joined by ``+``; a checkpoint by its
    run's folder and file; other file locations as a hash."""
    varying = swept_keys(sweep_dir) if sweep_dir else set()
    overrides = [str(o) for o in overrides or []]
    roles = roles_of(_root_, {_key(o) for o in overrides})
    parts, files = [], []
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        have = roles.get(key, frozenset())
        if not sep or key == "hydra" or key.startswith("hydra.") or (varying and key not in varying):
            continue
        if key in ("checkpoint", "checkpoints"):
            parts.append(_checkpoint_name(value))
        elif FILE in have:
            files.append(override.lstrip("+~"))
        elif NEUTRAL not in have:
            parts.append(f"{key.rsplit('.', 1)[-1]}-{_UNSAFE.sub('_', value).strip('_')}")
    if files:
        parts.append(f"files-{_files_hash(files)}")
    return "+".join(parts) or "job"


def note_swept_keys(argv: list[str]) -> None:
    """Remember which keys ``-m`` sweeps (``method=ce,sat``), for the jobs' log labels."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not {"-m", "--multirun"} & set(argv):
        return
    try:
        parsed = OverridesParser.create().parse_overrides([a for a in argv if "=" in a and not a.startswith("-")])
    except Exception:  # noqa: BLE001  (Hydra reports a malformed override itself)
        return
    os.environ[SWEPT_KEYS] = ",".join(o.key_or_group for o in parsed if o.is_sweep_override())
