"""The composition root's glue: what the entry points (train.py, evaluate.py,
attack.py) share. The task wrapper that turns bad input into one line, exit statuses,
and (in this package) the resolvers and schemas Hydra composes with (``register``),
sweep folder names (``sweeps``), Hydra's hooks into a run (``hooks``) and the commands
that continue a stopped run (``continue_run``). Nothing below this package imports it.

Exit statuses: 0 done; 2 bad input (a one-line ``error:`` message, nothing lost);
128 + N a run stopped by signal N after writing its checkpoint (the command that
continues it is printed); 1 anything else (with its traceback in the log).
"""

from __future__ import annotations

import atexit
import gc
import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sat.cli import register
from sat.cli.sweeps import note_swept_keys
from sat.errors import UserError
from sat.parallel.identity import is_rank0
from sat.run.preemption import Preempted, StoppedAtStart, stop_at_start

log = logging.getLogger("sat")

_task_started = False  # did Hydra get as far as calling the task?


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


def guarded(task: Callable[[DictConfig], dict[str, Any]] | str, cfg: DictConfig, log_refusal: bool = True,
            importing: bool = True) -> dict[str, Any]:
    """Run a task inside Hydra's run (the command line's and the Python API's): bad
    input comes out as one :class:`UserError` and leaves no run folder behind (logged
    first with ``log_refusal``: a sweep's job log keeps it), any other failure is logged
    with its traceback, a preempted run says how to continue it, and the run's output
    folder is always named, so a failed job of a sweep can be found. Without
    ``importing``, constructors' arguments are read from their source files (no torch).
    ``task``: a function, or the name of a module whose ``run`` it is (imported here,
    where a signal while torch loads is answered in one line)."""
    from sat.cli.method_keys import note_ignored_keys
    from sat.config import keys

    out = OmegaConf.select(cfg, "paths.output_dir", default="?")
    try:
        with stop_at_start():  # a signal before the task's own handlers (torch loading): one line, no folder left
            note_ignored_keys()
            keys.check_keys(cfg, importing)  # keys added with +, which Hydra accepts whatever they are
            if isinstance(task, str):  # a task module's name: imported here, under the handler
                task = importlib.import_module(task).run
        return task(cfg)
    except StoppedAtStart as e:
        if is_rank0() and _drop_refused(out, UserError(f"stopped by {e.signal} before training began")):
            log.warning("stopped by %s before training began: nothing was trained, no run folder left; rerun the "
                        "same command", e.signal)
        else:
            _say_how_to_continue(out)
        raise
    except Preempted:
        _say_how_to_continue(out)
        raise
    except Exception as e:
        user_error = _user_error_in(e)
        if user_error is None:
            log.exception("run failed; run folder: %s", out)
            raise
        if log_refusal:
            log.error("%s (run folder: %s)", user_error, out)
        _drop_refused(out, user_error)
        raise user_error from None
    except BaseException:
        log.exception("run stopped; run folder: %s", out)
        raise


def run_task(task: Callable[[DictConfig], dict[str, Any]] | str, cfg: DictConfig, importing: bool = True
             ) -> dict[str, Any]:
    """:func:`guarded` for an entry point: bad input ends with its one ``error:`` line
    and exit status 2."""
    global _task_started
    _task_started = True
    try:
        return guarded(task, cfg, importing=importing)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def check_config(cfg: DictConfig) -> None:
    """What an entry point refuses before it imports its task (and torch with it, 1-3 s
    of a typo's answer): keys that no schema and no constructor's source file knows.
    Hydra has refused unknown options and keys and wrong types while composing."""
    run_task(lambda _cfg: {}, cfg, importing=False)


def _drop_refused(output_dir: Any, error: UserError) -> bool:
    """A run refused before it started leaves no folder (a sweep job: a line in the sweep's
    refused.log); returns whether it was removed."""
    from hydra.core.hydra_config import HydraConfig

    from sat.run.refused import drop_refused_run_folder

    if output_dir == "?" or not is_rank0():
        return False
    hc = HydraConfig.get() if HydraConfig.initialized() else None
    sweep = str(hc.sweep.dir) if hc is not None and str(hc.mode) == "RunMode.MULTIRUN" else None
    return drop_refused_run_folder(output_dir, str(error), sweep)


def _say_how_to_continue(output_dir: Any) -> None:
    from hydra.core.hydra_config import HydraConfig

    from sat.cli.continue_run import continue_commands

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


def check_output_dirs(overrides: list[str]) -> None:
    """Hydra creates the output folder before the task runs, and reports a folder it
    cannot create with a traceback: check the folders the overrides give first."""
    for arg in overrides:
        key, sep, value = arg.partition("=")
        if not sep or key.lstrip("+") not in ("hydra.run.dir", "hydra.sweep.dir") or "${" in value:
            continue
        problem = _unwritable(Path(value.strip("'\"")))
        if problem:
            raise UserError(f"output folder {value} {problem}; accepted: a writable folder ({key}=...)")


def check_sweep_size(argv: list[str]) -> None:
    """A sweep's jobs counted from its parsed overrides (the command line's, and sweeps
    given as ``hydra.sweeper.params.*``) before Hydra makes their list:
    ``seed=range(0,1e8)`` would end in a MemoryError traceback."""
    if not {"-m", "--multirun"} & set(argv) or any(a.startswith(("hydra/sweeper=", "hparams_search=")) for a in argv):
        return  # (another sweeper than the grid: optuna's range() is a search space, not a list of jobs)
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from sat.report.grid import MAX_JOBS, grid_size

    lines = [a for a in argv if "=" in a and not a.startswith("-")]
    lines = [f"{k.partition('hydra.sweeper.params.')[2]}={v}" if k.lstrip("+").startswith("hydra.sweeper.params.")
             else line for line in lines for k, _, v in [line.partition("=")]]
    try:
        size = grid_size(OverridesParser.create().parse_overrides(lines))
    except HydraException:  # Hydra reports a malformed override itself
        return
    if size > MAX_JOBS:
        raise UserError(f"this sweep makes {size:,} jobs, more than {MAX_JOBS:,}; accepted: a sweep of fewer jobs "
                        "(a smaller range() or fewer values per swept key)")


def bad_input(e: BaseException) -> UserError | None:
    """The one-line error for what went wrong before the task ran: a config Hydra could
    not compose (:func:`sat.config.keys.composition_error`) or a run folder refused while
    Hydra set up its log (:class:`sat.cli.hooks.RunLogFile`); None for anything else."""
    from sat.config.keys import composition_error

    return composition_error(e) or _user_error_in(e)


def command_line(argv: list[str], resumable: bool = False) -> list[str]:
    """An entry point's arguments before Hydra sees them: ``resume=RUN_DIR`` expanded into
    that run's own command (``resumable``: train.py), the output folders they name and the
    size of a sweep checked."""
    from sat.cli.continue_run import expand_resume

    if resumable:
        argv = expand_resume(argv)
    check_output_dirs(argv)
    check_sweep_size(argv)
    return argv


def main(hydra_main: Callable[[], Any], resumable: bool = False, config_name: str | None = None) -> None:
    """Call an entry point's ``@hydra.main`` function. A config Hydra cannot compose (an
    unknown option or key, a wrong type, a malformed override) is bad input: one
    ``error:`` line (:func:`sat.config.keys.composition_error`) and status 2, where Hydra
    would print its own 7 to 26 lines and exit with 1. ``resumable``: the entry point
    takes ``resume=RUN_DIR`` (train.py), which becomes that run's own command, in its folder.
    ``config_name``: the entry point's primary config (its task), whose ``dry_run=true``
    is checked by :mod:`sat.cli.dry_run` instead of run."""
    from sat.cli import dry_run

    # The interpreter's last garbage collection walks every object torch, Hydra and their
    # imports made (2-5 s of a short run's exit); the files are closed by then, so skip it.
    atexit.register(gc.freeze)
    register.register_config()
    try:
        sys.argv[1:] = command_line(sys.argv[1:], resumable)
        checking = config_name is not None and dry_run.requested(sys.argv[1:])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    if checking:  # the config in the entry point's conf/ (Hydra's config_path="conf")
        raise SystemExit(dry_run.main(Path(sys.argv[0]).resolve().parent / "conf", config_name, sys.argv[1:]))
    note_swept_keys(sys.argv[1:])
    wants_trace = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises what it cannot compose (instead of printing it)
    try:
        hydra_main()
    except SystemExit as e:
        if e.code == 1 and not _task_started:
            raise SystemExit(2) from None
        raise
    except Exception as e:
        error = None if wants_trace else bad_input(e)
        if error is None:
            raise
        print(f"error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
