"""Continuing a stopped run from what the user can type.

``python train.py resume=RUN_DIR`` continues the run in its own folder: the run's
overrides (from ``RUN_DIR/.hydra/overrides.yaml``) are put back in front of the
command, so the same config is composed again, and Hydra writes into ``RUN_DIR``. A
preempted run prints that command (and, for a sweep job, the command that continues
the whole sweep in place).

A folder's ``overrides.yaml`` is data from whoever wrote the folder (a copied run):
each stored override is checked before it reaches Hydra (:func:`check_stored`), so a
stored line can set the run's own settings and nothing else: no ``hydra.*`` key (Hydra's
callbacks, its output folders), no ``_target_`` or other Hydra key in a key or a value,
no resolver call (``${oc.env:...}``), no sweep, no key the run's schema does not know,
and not the folder the continuation writes (``paths.output_dir``).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from sat.config.schema import TrainConfig
from sat.errors import UserError
from sat.run.records import read_record

CONF = Path(__file__).resolve().parents[2] / "conf"  # the config groups a stored override may choose from
MAX_OVERRIDES_BYTES = 1 << 20  # a run's overrides.yaml is a few hundred bytes
_HYDRA_KEY = re.compile(r"^_[A-Za-z]\w*_$")  # _target_, _args_, _partial_, _recursive_, ...
_RESOLVER_CALL = re.compile(r"\$\{\s*(?!oc\.select\s*:)[A-Za-z_][\w.]*\s*:")
_NEVER_STORED = ("paths.output_dir",)  # where the continuation writes: RUN_DIR itself


def _key(override: str) -> str:
    """``+trainer.x=1`` -> ``trainer.x``; ``~noise`` -> ``noise``."""
    return override.lstrip("+~").partition("=")[0]


def _run_overrides(folder: Path) -> list[str] | None:
    """The overrides a run was composed from, checked (:func:`check_stored`), or None when
    ``folder`` is not a run folder."""
    path = folder / ".hydra" / "overrides.yaml"
    try:
        if path.stat().st_size > MAX_OVERRIDES_BYTES:
            raise UserError(f"{path} holds {path.stat().st_size:,} bytes, not a run's overrides; accepted: the "
                            f"overrides.yaml train.py wrote (under {MAX_OVERRIDES_BYTES:,} bytes)")
        stored = yaml.safe_load(read_record(path))
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(stored, list):
        return None
    return [check_stored(o, path) for o in stored]


def _groups() -> set[str]:
    return {p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra"} if CONF.is_dir() else set()


def _schema_knows(key: str, groups: set[str]) -> bool:
    """``key`` names a setting of ``train.py``'s schema (through its nested schemas), or
    lies in a node whose keys are a constructor's (a group: checked when composed)."""
    head, *rest = key.split(".")
    if not rest and head in groups:
        return True
    schema: Any = TrainConfig
    for part in [head, *rest]:
        if schema is None:
            return True  # below a free-form node (method.alpha): its constructor's arguments
        fields = {f.name: f for f in dataclasses.fields(schema)}
        if part not in fields:
            return False
        hint = typing.get_type_hints(schema).get(part)
        schema = next((h for h in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(h)), None)
    return True


def _hydra_keys_in(value: Any) -> list[str]:
    """Hydra's special keys (``_target_``...) anywhere in an override's parsed value."""
    if isinstance(value, Mapping):
        return [str(k) for k in value if _HYDRA_KEY.match(str(k))] + \
            [k for v in value.values() for k in _hydra_keys_in(v)]
    if isinstance(value, (list, tuple)):
        return [k for v in value for k in _hydra_keys_in(v)]
    return []


def check_stored(override: Any, where: Path) -> str:
    """One override read from a run folder, as Hydra will read it, or a one-line
    UserError saying why a continuation never takes it from a folder."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    def refuse(why: str) -> UserError:
        return UserError(f"resume: {where} holds the override {str(override)[:200]!r}, {why}, which a continuation "
                         "never takes from a run folder; accepted: the run's own settings (what train.py writes "
                         "there), or settings typed on the command line")

    if not isinstance(override, str):
        raise refuse("not an override string")
    try:
        parsed = OverridesParser.create().parse_override(override)
    except HydraException:
        raise refuse("not an override Hydra can parse") from None
    key = parsed.key_or_group
    parts = re.split(r"[./@]", f"{key}@{parsed.package}" if parsed.package else key)
    if parts[0] == "hydra" or "hydra" in parts:
        raise refuse("a setting of Hydra itself (hydra.*)")
    special = [p for p in parts if _HYDRA_KEY.match(p)] + \
        (_hydra_keys_in(parsed.value()) if parsed.value_type is not None and not parsed.is_sweep_override() else [])
    if special:
        raise refuse(f"a Hydra key ({special[0]})")
    if parsed.is_sweep_override():
        raise refuse("a sweep (a run has one value per setting)")
    if _RESOLVER_CALL.search(override):
        raise refuse("a resolver call (${...:...})")
    if key in _NEVER_STORED:
        raise refuse("the folder a run writes")
    groups = _groups()
    if not _schema_knows(key, groups):
        raise refuse("not a setting of train.py")
    value = parsed.value() if parsed.value_type is not None else None
    if key in groups and value is not None and not (isinstance(value, str) and re.fullmatch(r"[\w.\-]+", value)):
        raise refuse(f"not an option of conf/{key}/")
    return override


def expand_resume(argv: list[str]) -> list[str]:
    """The command line with ``resume=RUN_DIR`` expanded (before Hydra composes): the
    run's own overrides first, the ones typed now after them (a typed key replaces the
    stored one), and ``hydra.run.dir=RUN_DIR`` unless another folder was asked for.
    Anything else (a checkpoint file, ``auto``, a sweep) is left as it is."""
    if "-m" in argv or "--multirun" in argv:
        return argv
    value = next((a.partition("=")[2] for a in argv if _key(a) == "resume" and "=" in a), None)
    if not value:
        return argv
    folder = Path(value.strip("'\"")).expanduser()
    stored = _run_overrides(folder) if folder.is_dir() else None
    if stored is None:
        return argv
    typed = {_key(a) for a in argv if not a.startswith("-")}
    kept = [o for o in stored if _key(o) not in typed and _key(o) not in ("resume", "hydra.run.dir")]
    run_dir = [] if "hydra.run.dir" in typed else [f"hydra.run.dir={folder}"]
    return [*kept, *argv, *run_dir]


def _shown(path: Path | str) -> str:
    """A path as short as it is exact: relative to the current folder when below it."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _command(script: str, args: list[str]) -> str:
    return " ".join(["python", shlex.quote(script), *map(shlex.quote, args)])


def _script(job_name: str) -> str:
    """The entry point as the user ran it (a sweep worker's own argv names something else)."""
    first = sys.argv[0] if sys.argv else ""
    return first if first.endswith(".py") else f"{job_name}.py"


def continue_commands(hydra_cfg: Any, output_dir: str | Path) -> list[str]:
    """The commands that continue a stopped run (``hydra_cfg``: Hydra's own config of
    the run, ``HydraConfig.get()``): ``resume=RUN_DIR`` for this run (or sweep job),
    and for a sweep job the sweep's own command with its folder, which continues
    every job in place (finished ones are left as they are)."""
    script = _script(str(hydra_cfg.job.name))
    commands = [_command(script, [f"resume={_shown(output_dir)}"])]
    if str(hydra_cfg.mode) == "RunMode.MULTIRUN":
        sweep_dir = Path(str(hydra_cfg.sweep.dir))
        try:
            sweep = yaml.safe_load(read_record(sweep_dir / "multirun.yaml"))["hydra"]["overrides"]
        except (OSError, yaml.YAMLError, KeyError, TypeError, UserError):
            return commands
        hydra_args = [o for o in sweep.get("hydra") or [] if _key(o) not in ("hydra.mode", "hydra.sweep.dir")]
        commands.append(_command(script, ["-m", *map(str, sweep.get("task") or []), *map(str, hydra_args),
                                          f"hydra.sweep.dir={_shown(sweep_dir)}"]))
    return commands
