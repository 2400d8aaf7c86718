"""The study sweeper: Optuna's ask-and-tell loop around a Hydra launcher.

Each round asks the study for as many trials as run at once, launches them as ordinary
jobs (a trial's folder is ``<sweep dir>/trial-<number>``) and tells the study what each
returned. The study lives in a database, so:

- a stopped search (killed, preempted, a crashed launcher) continues with the same
  command: the trials its sweeper left running are run again in their own folders
  (a run folder with a checkpoint continues from it), then new ones until the study
  holds ``n_trials`` complete trials;
- several sweepers may share one study (one database URL and study name): each counts
  the others' running trials as under way. A sweeper records its trials' owner
  (``host:pid``) and, every minute, that they are alive (``alive_at``): a running trial
  is taken over when its owner on this host has exited, or when it has not been heard
  of for ten minutes (its sweeper on another host died).

A failed trial (an exception, or a run refused as bad input: exit status 2) is told as
failed with its one-line reason in the user attribute ``reason`` and the search goes
on; once the study holds ``max_failures`` failed trials it stops with an error.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.sat_optuna_sweeper import space as search_space

log = logging.getLogger(__name__)

DATABASE = "optuna.db"  # the default storage: SQLite in the sweep folder
HEARTBEAT_S = 60  # a sweeper records that its running trials are alive this often ...
STALE_S = 600  # ... and a running trial not heard of for this long is taken over by the next sweeper


class TrialRefused(Exception):
    """A trial's run exited with status 2 (bad input); the message is its reason."""


class TrialTask:
    """The task function of one trial: an exit with status 2 (the entry point's one-line
    refusal of bad input) becomes a failed job, so the search goes on; any other exit
    (a preempted run's) still ends the search, leaving the trial to be continued."""

    def __init__(self, task: TaskFunction) -> None:
        self.task = task

    def __call__(self, cfg: DictConfig) -> Any:
        try:
            return self.task(cfg)
        except SystemExit as e:
            if e.code != 2:
                raise
            raise TrialRefused(f"error: {reason(e.__context__) if e.__context__ else 'exit status 2'}") from None


def reason(error: BaseException) -> str:
    """One line saying what went wrong: the message of the first user error (bad input)
    behind ``error``, else ``error``'s type and first line."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, TrialRefused) or type(seen).__name__ == "UserError":
            return _first_line(seen)
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return f"{type(error).__name__}: {_first_line(error)}"


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def quoted(value: str) -> str:
    """``value`` as one quoted string of Hydra's override grammar (a path with spaces or commas)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def owner() -> str:
    """Who runs a trial: ``host:pid`` of its sweeper (a user attribute of the trial)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def abandoned(attrs: dict[str, Any], now: float) -> bool:
    """Is a running trial left by a sweeper that is gone? Its sweeper was on this host and
    has exited, or has not said it is alive (``alive_at``) for :data:`STALE_S` seconds (a
    sweeper on another host that died)."""
    host, _, pid = str(attrs.get("owner", "")).rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():  # a process before this one, whose number this one got
            return True
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    return now - float(attrs.get("alive_at", now)) > STALE_S


class Heartbeat:
    """While trials run, say every :data:`HEARTBEAT_S` seconds that their sweeper is alive
    (a context manager; ``beat`` writes the time)."""

    def __init__(self, beat: Any) -> None:
        self.beat, self.stop = beat, threading.Event()
        self.thread = threading.Thread(target=self._run, name="study-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self.beat()
            except Exception as e:  # noqa: BLE001  (a database hiccup must not end the trials)
                log.warning("could not record the trials' heartbeat: %s", e)

    def __enter__(self) -> None:
        self.beat()
        self.thread.start()

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


class StudySweeper(Sweeper):
    def __init__(self, direction: str, n_trials: int, n_jobs: int | None, max_failures: int | None,
                 study_name: str | None, storage: str | None, sampler: Any, params: dict | None) -> None:
        from sat.config import validate

        self.direction = validate.choice("hydra.sweeper.direction", direction, ("maximize", "minimize"))
        self.n_trials = validate.positive_int("hydra.sweeper.n_trials", n_trials)
        self.n_jobs = None if n_jobs is None else validate.positive_int("hydra.sweeper.n_jobs", n_jobs)
        self.max_failures = self.n_trials if max_failures is None else \
            validate.positive_int("hydra.sweeper.max_failures", max_failures)
        self.study_name, self.storage_url, self.sampler_cfg = study_name, storage, sampler
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.storage: Any = None  # the study's optuna.storages.RDBStorage, once open
        self.study_id: int = -1

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        # resolved here, where interpolations reach the whole config (sampler.seed: ${seed})
        node = config.hydra.sweeper
        self.sampler_cfg = OmegaConf.to_container(node.sampler, resolve=True) if node.get("sampler") else None
        self.params = {str(k): str(v) for k, v in (OmegaConf.to_container(node.params, resolve=True)
                                                   if node.get("params") else {}).items()}
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=TrialTask(task_function), config=config)

    # --- the study -------------------------------------------------------------------------

    def _parallel(self) -> int:
        """Trials run at once: ``n_jobs``, else the launcher's own parallelism."""
        if self.n_jobs is not None:
            return self.n_jobs
        launcher = self.config.hydra.launcher
        jobs = OmegaConf.select(launcher, "n_jobs", default=None) or OmegaConf.select(launcher, "array_parallelism",
                                                                                      default=None)
        if jobs is None:
            return 1
        return max(1, int(jobs) if int(jobs) > 0 else (os.cpu_count() or 1) + 1 + int(jobs))  # joblib: -1 = all

    def _open_study(self, sweep_dir: Path) -> Any:
        import numpy as np
        import optuna
        from hydra.utils import instantiate

        from sat.errors import UserError

        url = self.storage_url or f"sqlite:///{sweep_dir / DATABASE}"
        name = self.study_name or str(self.config.hydra.sweep.dir)
        sampler = instantiate(self.sampler_cfg) if self.sampler_cfg else None
        try:
            self.storage = optuna.storages.RDBStorage(url)
            study = optuna.create_study(storage=self.storage, study_name=name, sampler=sampler,
                                        direction=self.direction, load_if_exists=True)
            self.study_id = self.storage.get_study_id_from_name(name)
        except (ValueError, ImportError) as e:  # another direction than the stored study's, a malformed URL, a
            # database driver that is not installed (psycopg2, pymysql)
            raise UserError(key="hydra.sweeper.storage", value=url, problem=f"cannot hold study {name!r} ({e})",
                            accepted="an RDB URL (sqlite:///..., postgresql://...) whose driver is installed, for a "
                                     "study of this direction") from None
        if study.trials and isinstance((self.sampler_cfg or {}).get("seed"), int):
            # A seeded sampler would replay the draws it made before the search stopped (its first
            # random trials again): a continued study's sampler is seeded from the seed and the
            # number of trials the study holds, so the same command still makes the same draws.
            seed = int(np.random.SeedSequence([self.sampler_cfg["seed"], len(study.trials)]).generate_state(1)[0])
            study.sampler = instantiate({**self.sampler_cfg, "seed": seed})
        log.info("study %r in %s (%s; %d trials in it)", name, url, self.direction, len(study.trials))
        return study

    def sweep(self, arguments: list[str]) -> None:
        import optuna
        from optuna.trial import TrialState

        from sat.errors import UserError
        from sat.run.files import write_atomic

        distributions, fixed = search_space.parse(self.params, arguments)
        if not distributions:
            raise UserError(key="hydra.sweeper.params", value={}, problem="leaves the study nothing to search",
                            accepted="hparams_search=<a search space> or hydra.sweeper.params.<key>=interval(a,b) | "
                                     "choice(...) | range(...)")
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # every trial in this folder, whatever its own settings would name (hydra.sweep.dir may use them)
        fixed = [*fixed, f"hydra.sweep.dir={quoted(str(sweep_dir))}"]
        write_atomic(sweep_dir / "multirun.yaml", OmegaConf.to_yaml(self.config))
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # this sweeper says what happens, once
        study = self._open_study(sweep_dir)
        at_once = self._parallel()

        left = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if abandoned(t.user_attrs, time.time())]
        for start in range(0, len(left), at_once):  # a stopped search's trials first, in their own folders
            batch = left[start:start + at_once]
            for trial in batch:
                self._set_attr(trial.number, "owner", owner())
            log.info("continuing trial(s) %s, left running by a stopped search", [t.number for t in batch])
            self._run(study, [(t.number, t.params) for t in batch], fixed)

        while True:
            trials = study.get_trials(deepcopy=False)
            count = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.RUNNING,
                                                                     TrialState.FAIL)}
            if count[TrialState.FAIL] >= self.max_failures:
                last = max((t for t in trials if t.state == TrialState.FAIL), key=lambda t: t.number)
                raise UserError(key="hydra.sweeper.max_failures", value=self.max_failures,
                                problem=f"is reached: the study holds {count[TrialState.FAIL]} failed trials (the "
                                        f"last, trial {last.number}: {last.user_attrs.get('reason', '?')})",
                                accepted="the trials' settings fixed, or a larger hydra.sweeper.max_failures")
            todo = self.n_trials - count[TrialState.COMPLETE] - count[TrialState.RUNNING]
            if todo <= 0:
                break
            batch = [study.ask(distributions) for _ in range(min(todo, at_once))]
            for trial in batch:
                trial.set_user_attr("owner", owner())
            self._run(study, [(t.number, t.params) for t in batch], fixed)
        self._say_best(study)

    def _run(self, study: Any, trials: list[tuple[int, dict[str, Any]]], fixed: list[str]) -> None:
        """Launch ``(number, params)`` trials side by side and tell the study their results."""
        from optuna.trial import TrialState

        jobs = [tuple(fixed + search_space.overrides(params) + [f"hydra.sweep.subdir=trial-{number}"])
                for number, params in trials]
        with Heartbeat(lambda: [self._set_attr(number, "alive_at", time.time()) for number, _ in trials]):
            returns = self.launcher.launch(jobs, initial_job_idx=trials[0][0])
        for (number, _), ret in zip(trials, returns):
            run_dir = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir", default=None) if ret.hydra_cfg \
                else None
            if run_dir:
                self._set_attr(number, "run_dir", str(run_dir))
            value, why = _value(ret)
            if why is None:
                study.tell(number, value)
                log.info("trial %d: %s", number, value)
            else:
                self._set_attr(number, "reason", why)
                study.tell(number, state=TrialState.FAIL)
                log.warning("trial %d failed: %s", number, why)

    def _set_attr(self, number: int, key: str, value: Any) -> None:
        """A user attribute of trial ``number`` (which need not be this process's ``Trial``)."""
        self.storage.set_trial_user_attr(
            self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number), key, value)

    def _say_best(self, study: Any) -> None:
        from optuna.trial import TrialState

        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if complete:  # ties: the earliest trial (as python -m sat.report ranks them)
            sign = -1 if self.direction == "maximize" else 1
            best = min(complete, key=lambda t: (sign * t.value, t.number))
            log.info("study %r: %d complete trials; best: trial %d, %s, %s (%s)", study.study_name, len(complete),
                     best.number, best.value, best.params, best.user_attrs.get("run_dir", "?"))


def _value(ret: JobReturn) -> tuple[float | None, str | None]:
    """``(objective, None)`` for a job that returned a number, else ``(None, why not)``."""
    if ret.status != JobStatus.COMPLETED:
        error = ret._return_value
        return None, reason(error) if isinstance(error, BaseException) else f"job status {ret.status}"
    try:
        value = float(ret.return_value)
    except (TypeError, ValueError):
        return None, f"the task returned {ret.return_value!r}, not a number"
    if not math.isfinite(value):
        return None, f"the task returned {value} (is the objective's metric logged?)"
    return value, None
