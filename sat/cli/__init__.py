"""What the entry points (train.py, evaluate.py, attack.py) share: the config
resolvers, the task wrapper that turns bad input into one line, and exit statuses.

Exit statuses: 0 done; 2 bad input (a one-line ``error:`` message, nothing lost);
128 + N a run stopped by signal N after writing its checkpoint (the command that
continues it is printed); 1 anything else (with its traceback in the log).
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import sys
import tempfile
from pathlib import Path
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sat.errors import UserError
from sat.run.preemption import Preempted

log = logging.getLogger("sat")

_task_started = False  # did Hydra get as far as calling the task?


# Settings left out of folder names because their values are paths, yet they choose the
# data: jobs differing only in them get a short hash of their values instead.
FILE_KEYS = ("paths.data_dir", "dataset.root", "noise.from_file", "resume")


def sweep_subdir(override_dirname: str, seed: Any, overrides: Any = ()) -> str:
    """Sweep sub-folder: the job's overrides (seed excluded), then the seed, so seeds
    of one setting sit side by side: ``method-sat+model.width-64+seed-2``; then, if the
    job sets one of :data:`FILE_KEYS`, ``+files-<hash of those overrides>``, so that
    ``noise.from_file=A.pt,B.pt`` makes two folders. Neither ``=`` nor ``,``: the path
    pastes unquoted into ``checkpoint=``."""
    import hashlib

    name = f"{override_dirname}+seed-{seed}" if override_dirname else f"seed-{seed}"
    files = sorted(str(o).lstrip("+~") for o in overrides if str(o).lstrip("+~").partition("=")[0] in FILE_KEYS)
    return f"{name}+files-{hashlib.sha256(chr(10).join(files).encode()).hexdigest()[:8]}" if files else name


SWEPT_KEYS = "SAT_SWEPT_KEYS"  # the keys a command line sweeps, for the jobs (also in launcher processes)


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
    from hydra.core.hydra_config import HydraConfig

    return sweep_job(HydraConfig.get()) if HydraConfig.initialized() else ""


def _note_swept_keys(argv: list[str]) -> None:
    """Remember which keys ``-m`` sweeps (``method=ce,sat``) for :func:`sweep_job`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not {"-m", "--multirun"} & set(argv):
        return
    try:
        parsed = OverridesParser.create().parse_overrides([a for a in argv if "=" in a and not a.startswith("-")])
    except Exception:  # noqa: BLE001  (Hydra reports a malformed override itself)
        return
    os.environ[SWEPT_KEYS] = ",".join(o.key_or_group for o in parsed if o.is_sweep_override())


def register_config() -> None:
    """The resolvers and the schemas (sat/config/schema.py) the configs use; call
    before Hydra composes them."""
    from sat.config import schema as settings

    from sat.report.evaluation_sweep import job_name

    OmegaConf.register_new_resolver("sat_subdir", sweep_subdir, replace=True)
    OmegaConf.register_new_resolver("sat_job", job_name, replace=True)  # evaluate/attack sweep job folders
    OmegaConf.register_new_resolver("sat_job_label", lambda *, _root_: sweep_job(_root_.hydra), replace=True)
    settings.register()


register_resolvers = register_config  # the name tests/conftest.py calls


def _user_error_in(e: BaseException | None) -> UserError | None:
    """The UserError behind ``e``, if any (Hydra's instantiate wraps what a
    constructor raises); OmegaConf's missing values and bad interpolations are bad input too."""
    seen = e
    while seen is not None:
        if isinstance(seen, UserError):
            return seen
        if isinstance(seen, OmegaConfBaseException):
            key = getattr(seen, "full_key", None) or ""
            if "Missing mandatory value" in str(seen):
                return UserError(f"{key} is required; accepted: {key}=...")
            return UserError(f"{key or 'config'}: {str(seen).splitlines()[0]}")
        seen = seen.__cause__
    return None


def run_task(task: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> dict[str, Any]:
    """Run a task for an entry point: bad input ends with its one-line message (exit
    status 2), any other failure is logged with its traceback, and the run's output
    folder is always named, so a failed job of a sweep can still be found."""
    from sat.config import keys

    global _task_started
    _task_started = True
    out = OmegaConf.select(cfg, "paths.output_dir", default="?")
    try:
        keys.check_keys(cfg)  # keys added with +, which Hydra accepts whatever they are
        return task(cfg)
    except Preempted:
        _say_how_to_continue(out)
        raise
    except Exception as e:
        user_error = _user_error_in(e)
        if user_error is None:
            log.exception("run failed; run folder: %s", out)
            raise
        log.error("%s (run folder: %s)", user_error, out)
        print(f"error: {user_error}", file=sys.stderr, flush=True)
        _drop_refused(out, user_error)
        raise SystemExit(2) from None
    except BaseException:
        log.exception("run stopped; run folder: %s", out)
        raise


def _drop_refused(output_dir: Any, error: UserError) -> None:
    """A run refused before it started leaves no folder (a sweep job: a line in the sweep's refused.log)."""
    from hydra.core.hydra_config import HydraConfig

    from sat.run.refused import drop_refused_run_folder
    from sat.cli.continue_run import is_rank0

    if output_dir == "?" or not is_rank0():
        return
    hc = HydraConfig.get() if HydraConfig.initialized() else None
    sweep = str(hc.sweep.dir) if hc is not None and str(hc.mode) == "RunMode.MULTIRUN" else None
    drop_refused_run_folder(output_dir, str(error), sweep)


def _say_how_to_continue(output_dir: Any) -> None:
    from hydra.core.hydra_config import HydraConfig

    from sat.cli.continue_run import continue_commands, is_rank0

    if not HydraConfig.initialized() or not is_rank0():
        return
    commands = continue_commands(HydraConfig.get(), output_dir)
    log.warning("to continue this run: %s", commands[0])
    for command in commands[1:]:
        log.warning("to continue the whole sweep in place: %s", command)


def _unwritable(path: Path) -> str | None:
    """Why ``path`` cannot become an output folder, or None; creates nothing (a bad
    command must leave no folder behind)."""
    if path.exists() and not path.is_dir():
        return "is an existing file"
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return f"lies under the file {probe}"
    try:  # a real try: permission bits say nothing for root, and /proc or read-only mounts refuse anyway
        Path(tempfile.mkdtemp(dir=probe, prefix=".sat-probe-")).rmdir()
    except OSError as e:
        return f"cannot be written ({e.strerror or e})"
    return None


def _check_output_dirs(argv: list[str]) -> None:
    """Hydra creates the output folder before the task runs, and reports a folder it
    cannot create with a traceback: check the folders given on the command line first."""
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key.lstrip("+") not in ("hydra.run.dir", "hydra.sweep.dir") or "${" in value:
            continue
        problem = _unwritable(Path(value.strip("'\"")))
        if problem:
            print(f"error: output folder {value} {problem}; accepted: a writable folder ({key}=...)", file=sys.stderr,
                  flush=True)
            raise SystemExit(2) from None


def main(hydra_main: Callable[[], Any], resumable: bool = False) -> None:
    """Call an entry point's ``@hydra.main`` function. A config Hydra cannot compose (an
    unknown option or key, a wrong type, a malformed override) is bad input: one
    ``error:`` line (:func:`sat.config.keys.composition_error`) and status 2, where Hydra
    would print its own 7 to 26 lines and exit with 1. ``resumable``: the entry point
    takes ``resume=RUN_DIR`` (train.py), which becomes that run's own command, in its folder."""
    from sat.cli.continue_run import expand_resume
    from sat.config.keys import composition_error

    # The interpreter's last garbage collection walks every object torch, Hydra and their
    # imports made (2-5 s of a short run's exit); the files are closed by then, so skip it.
    atexit.register(gc.freeze)
    register_config()
    if resumable:
        sys.argv[1:] = expand_resume(sys.argv[1:])
    _check_output_dirs(sys.argv[1:])
    _note_swept_keys(sys.argv[1:])
    wants_trace = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises what it cannot compose (instead of printing it)
    try:
        hydra_main()
    except SystemExit as e:
        if e.code == 1 and not _task_started:
            raise SystemExit(2) from None
        raise
    except Exception as e:
        error = None if wants_trace else composition_error(e)
        if error is None:
            raise
        print(f"error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
