"""Where a run continues from, and what a continuation may change: the resume policy.

A run folder that already holds a checkpoint is continued in place (a requeued or
rerun job): its logs are cut back to the checkpoint's epoch and training goes on from
there, bit for bit as if it had never stopped. ``resume=PATH`` continues another run's
checkpoint in this folder instead, which then holds that run's history too.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from sat.config import validate
from sat.config.build import USER_CONFIG, StoredConfig
from sat.config.flat import flatten
from sat.config.roles import FIXED, covers, with_role
from sat.config.schema import TrainConfig, read
from sat.config.versions import as_today
from sat.errors import UserError
from sat.run.checkpoint import checkpoint_epoch, load_checkpoint, repair
from sat.run.files import write_atomic
from sat.run.folder import RunFolder
from sat.tasks.context import plain
from sat.tasks.train.reschedule import adopt_unused_schedule

log = logging.getLogger("sat")

RESUME_ACCEPTED = "resume=auto, a run folder (resume=RUN_DIR) or a checkpoint file (resume=RUN/checkpoints/last.pt)"

def changed_settings(now: dict[str, Any], stored: dict[str, Any], roles: dict[str, Any]) -> list[str]:
    """The settings a continuation must keep (role ``FIXED``: what the checkpoint's state
    means; continuing it under other values would silently train something else) whose
    values differ, as ``key (old -> new)``; a checkpoint of an older version is read as
    today's (:mod:`sat.config.versions`: a class under a former name, a setting added since)."""
    fixed = with_role(roles, FIXED)
    written = flatten(stored)
    a, b = as_today(written, TrainConfig), as_today(flatten(now), TrainConfig)
    return [f"{k} ({written.get(k, '<unset>')} -> {b.get(k, '<unset>')})" for k in sorted(set(a) | set(b))
            if covers(fixed, k) and a.get(k) != b.get(k)]


def check_epoch(state: dict[str, Any], source: Path, epochs: int) -> None:
    """A checkpoint's epoch is one of this run's (at most ``trainer.epochs``) and the one
    its own scheduler has counted: a crafted ``epoch`` (10**9) would otherwise pass for a
    finished run, or make the schedule's replay run for days."""
    epoch = int(state["epoch"])
    if epoch > epochs:
        raise UserError(f"resume: {source} holds epoch {epoch}, beyond this run's trainer.epochs={epochs}; accepted: "
                        "a checkpoint of this run (its epochs done <= trainer.epochs)")
    scheduler = state.get("scheduler")
    steps = scheduler.get("last_epoch") if isinstance(scheduler, dict) else None
    if isinstance(steps, int) and not isinstance(steps, bool) and steps != epoch:
        raise UserError(f"resume: {source} holds epoch {epoch} but its scheduler has stepped {steps} times (once an "
                        "epoch); accepted: a checkpoint train.py wrote, not edited")


def check_resumable(cfg: Any, state: dict[str, Any], source: Path) -> None:
    """Refuse continuing ``state`` under changed settings, except a schedule change that
    no epoch so far has felt, which ``state`` then takes (:mod:`sat.tasks.train.reschedule`).
    The checkpoint's epoch is checked first (:func:`check_epoch`)."""
    check_epoch(state, source, validate.positive_int("trainer.epochs", read(cfg, "trainer.epochs")))
    config = plain(cfg)
    roles = {**StoredConfig().roles(state["config"], TrainConfig), **USER_CONFIG.roles(config, TrainConfig)}
    changed = changed_settings(config, state["config"], roles)
    schedule = [c for c in changed if c.startswith("scheduler.")]
    if schedule and adopt_unused_schedule(cfg, state):
        changed = [c for c in changed if c not in schedule]
        log.info("resume: the changed scheduler settings have not acted before epoch %d; the run continues with "
                 "them", int(state["epoch"]) + 1)
    if changed:
        raise UserError(
            f"resume: {source} was trained with other settings: {', '.join(changed)}. A continued run keeps its "
            f"checkpoint's data, model, optimizer, schedule and length (a schedule change is accepted only before "
            f"it acts); rerun with the run's own settings (its folder's .hydra/config.yaml) or start a new run in "
            f"another folder")


def checkpoint_to_resume(resume: str, run_dir: Path) -> str:
    """What ``resume=`` continues, as the training task takes it: ``auto`` (this run
    folder's own checkpoint, if any) or a checkpoint file. A run folder stands for its
    ``checkpoints/last.pt``; this run's own folder for ``auto``."""
    if resume == "auto":
        return resume
    path = Path(resume).expanduser()
    if not path.exists():
        raise UserError(f"resume={resume} does not exist; accepted: {RESUME_ACCEPTED}")
    if path.is_file():
        return resume
    last = next((p for p in (path / "checkpoints" / "last.pt", path / "last.pt") if p.is_file()), None)
    if last is None:
        raise UserError(f"resume={resume} is a folder without checkpoints/last.pt (nothing to continue); "
                        f"accepted: {RESUME_ACCEPTED}")
    return "auto" if path.resolve() == run_dir.resolve() else str(last)


def resume_source(run: RunFolder, resume: str) -> Path | None:
    """``auto``: this folder's last.pt if it has one (after finishing an interrupted
    publication of its files); otherwise the given checkpoint (a run folder: its last.pt)."""
    resume = checkpoint_to_resume(resume, run.path)
    if resume == "auto":
        last = run.last_checkpoint()
        if last is None:
            if run.writable and (run.checkpoints / ".pending").is_dir():
                repair(run.checkpoints, -1)  # only uncommitted files: drop them
            return None
        state_epoch = checkpoint_epoch(last)
        if state_epoch is None:
            load_checkpoint(last)  # raises the reason
        for note in repair(run.checkpoints, state_epoch) if run.writable else []:
            log.info("checkpoints: %s", note)
        return last
    path = Path(resume).expanduser()
    source = RunFolder.of_checkpoint(path)
    if source is not None and RunFolder(source).status() == "running":
        log.warning("resume=%s: its run is still training; this continues the checkpoint it holds now", resume)
    if run.last_checkpoint() is not None and path.resolve() != run.last_checkpoint().resolve():
        raise UserError(f"resume={resume} but run folder {run.path} already holds its own checkpoint; accepted: "
                        "resume=auto to continue it, or another run folder for a new run")
    return path


def fork_history(source: Path, run: RunFolder, state: dict[str, Any]) -> None:
    """Continuing another folder's checkpoint here: bring its metrics up to the
    checkpoint's epoch and its best.pt (if it holds the recorded best epoch), so this
    folder holds the whole run."""
    src = RunFolder.of_checkpoint(source)  # a loose file (no run folder around it) has no history to bring
    if src is None or src == run.path.resolve() or not run.writable:
        return
    other = RunFolder(src)
    epoch, best = int(state["epoch"]), state.get("at_best_val")
    if other.metrics_file.is_file() and not run.metrics_file.exists():
        _copy(other.metrics_file, run.metrics_file)
        run.cut_metrics(epoch)
    if not best:
        return
    # the recorded best epoch's state: the checkpoint itself, or a file of the source run holding that epoch
    candidates = [source] if best["epoch"] == epoch else \
        [other.checkpoints / "best.pt", other.checkpoints / f"epoch_{best['epoch']}.pt"]
    for candidate in candidates:
        if candidate.is_file() and checkpoint_epoch(candidate) == best["epoch"]:
            run.checkpoints.mkdir(parents=True, exist_ok=True)
            _copy(candidate, run.checkpoints / "best.pt")
            return
    log.warning("no checkpoint of the best epoch (%d) in %s: best.pt appears with the next best epoch",
                best["epoch"], src)


def _copy(source: Path, target: Path) -> None:
    """A copy through the project's writer (atomic, never through a link at ``target``)."""
    with source.open("rb") as f:
        write_atomic(target, lambda out: shutil.copyfileobj(f, out))


def cut_logs(run: RunFolder, state: dict[str, Any] | None) -> tuple[int, bool]:
    """Cut metrics.jsonl back to the checkpoint's epoch (0 for a fresh start). Returns
    the first epoch TensorBoard must drop from older event files, and whether the
    checkpoint's own epoch lacks its log line (killed between checkpoint and log)."""
    epoch = int(state["epoch"]) if state is not None else 0
    dropped = run.cut_metrics(epoch)
    if dropped:
        log.info("metrics.jsonl: dropped %d line(s) logged after epoch %d", dropped, epoch)
    missing = epoch > 0 and epoch not in run.logged_epochs() and bool(state.get("metrics"))
    return (epoch if missing else epoch + 1), missing


def restore_hydra_record(run: RunFolder) -> None:
    """A refused command in a run's folder: Hydra has just overwritten the run's .hydra
    record; put back the one its checkpoint keeps."""
    last = run.last_checkpoint()
    try:
        state = load_checkpoint(last) if last is not None else None
    except UserError:  # a damaged last.pt: nothing to restore from
        return
    if state is not None:
        run.restore_hydra_files(state.get("hydra_files"))
