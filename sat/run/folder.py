"""A run's folder: one writer at a time (locked before anything is written in it), its
status, and cutting its logs back to a checkpoint when a run continues in place. Every
file is written through :mod:`sat.run.files` (never through a link)."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from sat.errors import UserError
from sat.run.files import check_no_links, open_append, write_atomic

log = logging.getLogger("sat")


def prepare_output_dir(path: str | Path) -> Path:
    """The output folder, created and known to be writable, or a one-line UserError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"output folder {path} is an existing file; accepted: a folder (hydra.run.dir=...)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise UserError(f"output folder {path} cannot be written ({e.strerror or e}); accepted: a writable folder "
                        "(hydra.run.dir=... or hydra.sweep.dir=...)") from None
    return path


def write_json_atomic(path: Path, obj: Any) -> None:
    """Readers (sat.report, a watching user) never see a half-written file."""
    write_atomic(path, json.dumps(obj, indent=2))


# --- the lock, held once per process ------------------------------------------------------
# The run's log handler (:class:`RunLogFile`, set up by Hydra before it writes anything
# in the folder) and the task's RunFolder both hold the lock; a flock belongs to one open
# file, so the process keeps one per folder and counts its holders.
_held: dict[str, list[int]] = {}  # resolved folder -> [fd, holders]


def _in_use(path: Path) -> UserError:
    return UserError(f"run folder {path} is in use by another training process; accepted: a folder no other run "
                     "is writing (wait for it, or choose another hydra.run.dir)")


def hold_lock(path: str | Path) -> None:
    """Lock run folder ``path`` for this process (again, if it holds it already), after
    refusing links where the framework writes; a one-line UserError if another process holds it."""
    path = Path(path)
    check_no_links(path)
    key = str(path.resolve())
    if key in _held:
        _held[key][1] += 1
        return
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise _in_use(path) from None
        raise
    _held[key] = [fd, 1]


def release_lock(path: str | Path) -> None:
    key = str(Path(path).resolve())
    if key not in _held:
        return
    _held[key][1] -= 1
    if _held[key][1] <= 0:
        os.close(_held.pop(key)[0])  # closing releases the flock


def _secondary_process() -> bool:
    """A non-zero rank of a distributed run (torchrun's RANK, srun's SLURM_PROCID): rank 0
    alone writes the run folder, so only rank 0 locks it."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return env["RANK"] != "0"
    return env.get("SLURM_STEP_NUM_TASKS", "1") not in ("0", "1") and env.get("SLURM_PROCID", "0") != "0"


def refuse_other_task(folder: Path, job: str) -> None:
    """evaluate.py or attack.py pointed at a training run's folder would replace its
    ``.hydra`` record with their own (and sat.report would no longer see the run)."""
    if job != "train" and ((folder / "checkpoints").is_dir() or (folder / "train.log").exists()):
        raise UserError(f"hydra.run.dir={folder} holds a training run; {job}.py writes its results into a folder of its "
                        f"own (it also saves them beside the checkpoint); accepted: another hydra.run.dir, or none")


class RunLogFile(logging.FileHandler):
    """Hydra's job log file (``hydra.job_logging.handlers.file``). Hydra sets up logging
    after creating the run folder and before writing ``.hydra/*.yaml`` into it, so this
    is where the folder is checked for links and locked: a refused command (a busy or
    booby-trapped folder) writes nothing there. The log itself is opened with O_NOFOLLOW."""

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None, delay: bool = False,
                 errors: str | None = None):
        self._folder: Path | None = Path(filename).parent
        try:
            if _secondary_process():
                self._folder = None
            else:
                refuse_other_task(self._folder, Path(filename).stem)
                hold_lock(self._folder)
        except UserError as e:  # inside logging.config: a traceback would follow, so exit here (status 2)
            print(f"error: {e}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        super().__init__(filename, mode, encoding, delay, errors)

    def _open(self):  # type: ignore[override]
        return open_append(self.baseFilename, self.encoding, self.errors)

    def close(self) -> None:
        super().close()
        if self._folder is not None:
            release_lock(self._folder)
            self._folder = None


class SweepFolderCheck(Callback):
    """A Hydra callback (``hydra.callbacks``): before a sweep writes ``multirun.yaml``
    and its jobs' folders, refuse a sweep folder holding links (a job folder that is a
    link would be written through)."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        try:
            check_no_links(Path(str(config.hydra.sweep.dir)))
        except UserError as e:  # inside Hydra: a traceback would follow, so exit here (status 2)
            print(f"error: {e}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None


class RunFolder:
    """``path``: the run's output folder (already created by :func:`prepare_output_dir`)."""

    writable = True  # False for the other processes of a distributed run (ReadOnlyRunFolder)

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.summary_file = self.path / "summary.json"
        self.metrics_file = self.path / "metrics.jsonl"
        self._locked = False

    @staticmethod
    def of_checkpoint(checkpoint: str | Path, record: bool = True) -> Path | None:
        """The run folder a checkpoint file belongs to (``RUN/checkpoints/x.pt``), or None
        when it does not lie in a run folder's ``checkpoints/`` (``record``: one with its
        ``.hydra/`` record)."""
        path = Path(checkpoint).resolve()
        run = path.parent.parent
        if record and not (path.parent.name == "checkpoints" and (run / ".hydra").is_dir()):
            return None
        return run

    @staticmethod
    def name_of_checkpoint(checkpoint: str | Path) -> str:
        """The name a checkpoint's run goes by (its folder's name; a loose file's own folder), without resolving links."""
        path = Path(checkpoint)
        return (path.parent.parent if path.parent.name == "checkpoints" else path.parent).name

    @property
    def noise_file(self) -> Path:
        return self.path / "noise.pt"

    # --- one writer -----------------------------------------------------------------------

    def lock(self) -> None:
        """Refuse a second process writing to this folder (the first one holds the lock
        until it exits, whatever way it exits), and a folder holding links where sat writes."""
        hold_lock(self.path)
        self._locked = True

    def unlock(self) -> None:
        if self._locked:
            release_lock(self.path)
            self._locked = False

    # --- status -------------------------------------------------------------------------

    def read_summary(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.summary_file.read_text())
        except (OSError, ValueError):
            return None

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.summary_file, summary)

    def set_status(self, status: str, **fields: Any) -> None:
        """Record ``running`` / ``finished`` / ``failed`` / ``preempted`` in summary.json,
        keeping what it already says."""
        summary = self.read_summary() or {}
        summary.update(status=status, **fields)
        if status != "failed":
            summary.pop("error", None)
            self.write_summary(summary)
            return
        try:
            self.write_summary(summary)
        except OSError as e:  # a full disk: record "failed" in place if that fits; never mask the run's own error
            try:
                fd = os.open(self.summary_file, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                with os.fdopen(fd, "w", encoding="utf-8") as f:  # fdopen never truncates: the old blocks hold it
                    f.write(json.dumps(summary))
                    f.truncate()
            except OSError:
                log.error("could not record status failed in %s (%s)", self.summary_file, e.strerror or e)

    # --- Hydra's record of the run ---------------------------------------------------------

    def hydra_files(self) -> dict[str, str]:
        """The texts of ``.hydra/*.yaml`` (the composed config, overrides, Hydra's own)."""
        folder = self.path / ".hydra"
        return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}

    def restore_hydra_files(self, files: dict[str, str] | None) -> None:
        """Put back the run's own ``.hydra/`` record: Hydra rewrites it for every command
        run in this folder, also for one whose continuation is then refused."""
        if not files:
            return
        folder = self.path / ".hydra"
        for name, text in files.items():
            if "/" in name or not name.endswith(".yaml"):
                continue
            write_atomic(folder / name, text)

    # --- continuing in place -------------------------------------------------------------

    def last_checkpoint(self) -> Path | None:
        path = self.checkpoints / "last.pt"
        return path if path.is_file() else None

    def logged_epochs(self) -> list[int]:
        if not self.metrics_file.is_file():
            return []
        epochs = []
        for line in self.metrics_file.read_text(encoding="utf-8").splitlines():
            try:
                epochs.append(int(json.loads(line)["epoch"]))
            except (ValueError, KeyError, TypeError):
                continue
        return epochs

    def cut_metrics(self, epoch: int) -> int:
        """Keep the lines of epochs <= ``epoch`` in metrics.jsonl (a run continued from
        that epoch's checkpoint logs the later ones again). Returns the lines dropped."""
        if not self.metrics_file.is_file():
            return 0
        kept, dropped = [], 0
        for line in self.metrics_file.read_text(encoding="utf-8").splitlines():
            try:
                row_epoch = int(json.loads(line)["epoch"])
            except (ValueError, KeyError, TypeError):
                dropped += 1  # a line cut short by a kill
                continue
            if row_epoch <= epoch:
                kept.append(line)
            else:
                dropped += 1
        if dropped:
            write_atomic(self.metrics_file, "".join(line + "\n" for line in kept))
        return dropped


class ReadOnlyRunFolder(RunFolder):
    """The run folder as the other processes of a distributed run see it: they read it
    (its checkpoints, to resume) and leave every write to rank 0's :class:`RunFolder`."""

    writable = False

    def lock(self) -> None:
        pass

    def write_summary(self, summary: dict[str, Any]) -> None:
        pass

    def set_status(self, status: str, **fields: Any) -> None:
        pass

    def restore_hydra_files(self, files: dict[str, str] | None) -> None:
        pass

    def cut_metrics(self, epoch: int) -> int:
        return 0
