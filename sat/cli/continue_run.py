"""Continuing a stopped run from what the user can type.

``python train.py resume=RUN_DIR`` continues the run in its own folder: the run's
overrides (from ``RUN_DIR/.hydra/overrides.yaml``) are put back in front of the
command, so the same config is composed again, and Hydra writes into ``RUN_DIR``. A
preempted run prints that command (and, for a sweep job, the command that continues
the whole sweep in place).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import yaml


def _key(override: str) -> str:
    """``+trainer.x=1`` -> ``trainer.x``; ``~noise`` -> ``noise``."""
    return override.lstrip("+~").partition("=")[0]


def _run_overrides(folder: Path) -> list[str] | None:
    """The overrides a run was composed from, or None when ``folder`` is not a run folder."""
    try:
        stored = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return [str(o) for o in stored] if isinstance(stored, list) else None


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
            sweep = yaml.safe_load((sweep_dir / "multirun.yaml").read_text(encoding="utf-8"))["hydra"]["overrides"]
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            return commands
        hydra_args = [o for o in sweep.get("hydra") or [] if _key(o) not in ("hydra.mode", "hydra.sweep.dir")]
        commands.append(_command(script, ["-m", *map(str, sweep.get("task") or []), *map(str, hydra_args),
                                          f"hydra.sweep.dir={_shown(sweep_dir)}"]))
    return commands
