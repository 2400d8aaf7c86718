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

from sat.run.checkpoint import checkpoint_epoch, load_checkpoint, repair
from sat.errors import UserError
from sat.run.folder import RunFolder
from sat.tasks.common import plain
from sat.cli.continue_run import checkpoint_to_resume
from sat.tasks.train.reschedule import adopt_unused_schedule

log = logging.getLogger("sat")

# What a checkpoint's state means: continuing it under other values of these would
# silently train something else (the optimizer and schedule states in the checkpoint
# would override the new values), so a changed one is refused.
RESUME_KEYS = ("dataset", "model", "noise", "method", "augment", "optimizer", "scheduler", "seed",
               "trainer.epochs", "trainer.batch_size", "trainer.precision")
# ... except these, which only say where files are or how fast they are read.
RESUME_IGNORED = {"dataset": ("root", "download", "num_workers", "decode", "persistent_workers", "prefetch_factor"),
                  "noise": ("from_file",)}


def _select(config: dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and key in RESUME_IGNORED:
        node = {k: v for k, v in node.items() if k not in RESUME_IGNORED[key]}
    return node


def changed_settings(now: dict[str, Any], stored: dict[str, Any]) -> list[str]:
    """The RESUME_KEYS whose values differ, as ``key`` for groups or ``key (old -> new)``."""
    changed = []
    for key in RESUME_KEYS:
        a, b = _select(stored, key), _select(now, key)
        if a != b:
            changed.append(key if isinstance(a, dict) or isinstance(b, dict) else f"{key} ({a} -> {b})")
    return changed


def check_resumable(cfg: Any, state: dict[str, Any], source: Path) -> None:
    """Refuse continuing ``state`` under changed settings, except a schedule change that
    no epoch so far has felt, which ``state`` then takes (:mod:`sat.tasks.train.reschedule`)."""
    changed = changed_settings(plain(cfg), state["config"])
    if "scheduler" in changed and adopt_unused_schedule(cfg, state):
        changed.remove("scheduler")
        log.info("resume: the changed scheduler settings have not acted before epoch %d; the run continues with "
                 "them", int(state["epoch"]) + 1)
    if changed:
        raise UserError(
            f"resume: {source} was trained with other settings: {', '.join(changed)}. A continued run keeps its "
            f"checkpoint's data, model, optimizer, schedule and length (a schedule change is accepted only before "
            f"it acts); rerun with the run's own settings (its folder's .hydra/config.yaml) or start a new run in "
            f"another folder")


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
    if run.last_checkpoint() is not None and path.resolve() != run.last_checkpoint().resolve():
        raise UserError(f"resume={resume} but run folder {run.path} already holds its own checkpoint; accepted: "
                        "resume=auto to continue it, or another run folder for a new run")
    return path


def fork_history(source: Path, run: RunFolder, state: dict[str, Any]) -> None:
    """Continuing another folder's checkpoint here: bring its metrics up to the
    checkpoint's epoch and its best.pt (if it holds the recorded best epoch), so this
    folder holds the whole run."""
    src = RunFolder.of_checkpoint(source, record=False)
    if src == run.path.resolve() or not run.writable:
        return
    other = RunFolder(src)
    epoch, best = int(state["epoch"]), state.get("at_best_val")
    if other.metrics_file.is_file() and not run.metrics_file.exists():
        shutil.copyfile(other.metrics_file, run.metrics_file)
        run.cut_metrics(epoch)
    if not best:
        return
    # the recorded best epoch's state: the checkpoint itself, or a file of the source run holding that epoch
    candidates = [source] if best["epoch"] == epoch else \
        [other.checkpoints / "best.pt", other.checkpoints / f"epoch_{best['epoch']}.pt"]
    for candidate in candidates:
        if candidate.is_file() and checkpoint_epoch(candidate) == best["epoch"]:
            run.checkpoints.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(candidate, run.checkpoints / "best.pt")
            return
    log.warning("no checkpoint of the best epoch (%d) in %s: best.pt appears with the next best epoch",
                best["epoch"], src)


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
