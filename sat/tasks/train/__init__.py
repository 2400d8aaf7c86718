"""The train task: one model, as the config describes, with logging and checkpoints.

The parts: :mod:`sat.tasks.train.job` builds the run, :mod:`sat.tasks.train.epochs` runs its
epochs, :mod:`sat.tasks.train.results` writes what it reports, :mod:`sat.tasks.train.resume`
decides where it continues from. Here they are put in order, around the run folder.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sat.config import schema as run_settings
from sat.config.build import USER_CONFIG
from sat.config.fingerprint import check_fingerprints, check_same_run, config_fingerprint
from sat.config.schema import TrainConfig, TrainerSettings, read
from sat.parallel import group as parallel
from sat.parallel.group import Distributed
from sat.run.checkpoint import load_checkpoint
from sat.run.folder import ReadOnlyRunFolder, RunFolder, prepare_output_dir
from sat.run.loggers import NullRunLogger, RunLogger
from sat.run.preemption import Preempted, StoppedAtStart, stop_at_start
from sat.tasks.context import plain
from sat.tasks.train.epochs import fit
from sat.tasks.train.job import TrainingJob, build_job
from sat.tasks.train.outputs import print_run_table
from sat.tasks.train.preflight import check_same_data, data_identity
from sat.tasks.train.results import finish, summary
from sat.tasks.train.resume import check_resumable, cut_logs, fork_history, restore_hydra_record, resume_source
from sat.tasks.train.trackers import tracker_factory

log = logging.getLogger("sat")


# --- the task ---------------------------------------------------------------------------


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train one model as ``cfg`` describes; returns the run's summary. Under torchrun
    (or Slurm with several tasks) every process runs this: one DDP run, whose folder
    rank 0 alone writes."""
    wall_start = time.perf_counter()
    group = parallel.setup(read(cfg, "device"))
    run = _open_run_folder(group, read(cfg, "paths.output_dir"))
    fresh = run.last_checkpoint() is None
    if not fresh and (run.read_summary() or {}).get("status") == "running":  # we hold its lock: its process is gone
        log.info("run %s was killed while training (its summary says running; no process held its lock): "
                 "continuing it from its last checkpoint", run.path)
    job = None
    try:
        with stop_at_start():  # a signal before the epochs' own handler: stopped at once, said in one line
            _same_settings_everywhere(group, cfg)
            settings = TrainerSettings.from_config(read(cfg, "trainer"))
            seed, resume = run_settings.seed(cfg), run_settings.resume(cfg)
            run_settings.objective(cfg)  # checked now, used when the run ends
            make_tracker = tracker_factory(cfg)
            source = resume_source(run, resume)
            resumed = load_checkpoint(source) if source is not None else None
            if resumed is not None:
                check_resumable(cfg, resumed, source)
            if _finished(cfg, run, settings, source, resumed):
                return run.read_summary()
            built = build_job(cfg, settings, seed, run, resumed, group)
            if group.enabled:  # every process built its job; then all refuse at once if they read other data
                group.settle()
                check_same_data(group.all_values(data_identity(built.data)))
            job = _begin(built, source, resumed, wall_start)
            group.settle()  # DDP: every process got this far, or all stop now
            job.distribute()
        result = _run(job, make_tracker, resumed)
    except StoppedAtStart as e:
        if fresh:  # nothing trained: say so (a folder holding only Hydra's record is then removed)
            run.set_status("failed", error=f"stopped by {e.signal} before training began")
        else:
            restore_hydra_record(run)
        raise
    except Preempted:
        raise
    except BaseException as e:
        if job is None:  # (a failure reported by another process is raised by settle)
            group.settle(e)
        if job is not None or fresh:  # never mark an existing run failed for a refused continuation
            run.set_status("failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
        else:  # a refused command in a run's folder: Hydra has just overwritten the run's .hydra record
            restore_hydra_record(run)
        raise
    finally:
        run.unlock()
    if run.writable:
        print_run_table(result)
    return result


def _same_settings_everywhere(group: Distributed, cfg: DictConfig) -> None:
    """DDP: every process was started with the same settings, or all refuse at once
    (ranks with another seed or lr would train something else, another noise.rate hang)."""
    try:
        config = plain(cfg)
        mine = config_fingerprint(config, USER_CONFIG.roles(config, TrainConfig))
    except Exception as e:  # unresolvable: the error surfaces where the value is read
        mine = f"unresolvable: {type(e).__name__}"
    check_fingerprints(group.all_values(mine))


def _finished(cfg: DictConfig, run: RunFolder, settings: TrainerSettings, source: Path | None,
              resumed: dict[str, Any] | None) -> bool:
    """This folder's run is finished already (a rerun of its command): report it again,
    if it is this command's run (a finished run of other settings never is)."""
    previous = run.read_summary()
    done = resumed is not None and int(resumed["epoch"]) >= settings.epochs and bool(previous) \
        and previous.get("status") == "finished" and source == run.last_checkpoint()
    if done:
        config = plain(cfg)
        check_same_run(config, resumed["config"], run.path, USER_CONFIG.roles(config, TrainConfig))
        log.info("run %s is already finished (%d epochs)", run.path, settings.epochs)
        if run.writable:
            print_run_table(previous)
    return done


def _begin(job: TrainingJob, source: Path | None, resumed: dict[str, Any] | None, wall_start: float) -> TrainingJob:
    """The run folder made ready for the job's epochs: the history it continues, its noise, a first summary."""
    run = job.run
    job.wall_start = wall_start
    if resumed is not None:
        fork_history(source, run, resumed)
        log.info("continuing from %s after epoch %d%s", source, job.epoch,
                 f" (+{job.partial['stats']['steps']} steps)" if job.partial else "")
    if run.writable:
        job.data.pattern.save(run.noise_file)
    _log_data(job)
    run.write_summary(summary(job))
    return job


def _run(job: TrainingJob, make_tracker: Any, resumed: dict[str, Any] | None) -> dict[str, Any]:
    """The epochs, logged (trackers from the first epoch not yet in their files), then the results."""
    run = job.run
    purge_from, missing = cut_logs(run, resumed)
    tracker = make_tracker(run.path, first_epoch=purge_from) if make_tracker is not None and run.writable else None
    logger = RunLogger(run.path, job.settings.epochs, tracker) if run.writable else NullRunLogger()
    with logger:
        if missing:
            logger.log_epoch(job.epoch, dict(resumed["metrics"]))
        fit(job, logger)
        return finish(job, logger)


def _open_run_folder(group: Distributed, output_dir: Any) -> RunFolder:
    """The run's folder, locked. Under DDP it is rank 0's (each process's Hydra names
    a folder by the time it started, ``${now:...}``, which may differ by a second):
    rank 0 writes it, the others only read it."""
    path = Path(group.from_rank0(str(output_dir)))
    try:
        if group.is_rank0:
            run = RunFolder(prepare_output_dir(path))
            run.lock()
        else:
            _drop_own_folder(Path(output_dir), path)
            run = ReadOnlyRunFolder(path)
    except BaseException as e:
        group.settle(e)
        raise
    group.settle()
    return run


def _drop_own_folder(own: Path, run: Path) -> None:
    """A non-zero rank's Hydra folder that is not the run's holds only Hydra's record
    (and log) of the same command: remove it, so one run leaves one folder."""
    if not own.is_dir() or own.resolve() == run.resolve():
        return
    if all(p.name == ".hydra" or p.suffix == ".log" for p in own.iterdir()):
        shutil.rmtree(own, ignore_errors=True)
        with contextlib.suppress(OSError):
            own.parent.rmdir()  # the date folder, if that was all it held


def _log_data(job: TrainingJob) -> None:
    data, noise = job.data, job.data.noise_summary()
    log.info("%s: %d train / %d val / %d test samples, %d classes, %s loader; noise %s rate %.4g -> %.2f%% wrong "
             "training labels", data.data.name, len(data.train), len(data.val or []), len(data.test), data.num_classes,
             data.loader_kind, noise["kind"], noise["rate"], 100 * noise["realised_error"])


def objective(summary: dict[str, Any], cfg: DictConfig) -> float:
    """The value ``train.py`` returns to a sweeper (``objective=``; NaN where the run
    has none, e.g. no validation split)."""
    section, metric = run_settings.objective(cfg)
    values = summary.get(section) or {}
    return float(values.get(metric, math.nan))
