"""A run's folder: one writer at a time, its status, and cutting its logs back to a
checkpoint when a run continues in place."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from sat.checkpoint import readable_by_others
from sat.errors import UserError


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        readable_by_others(fd)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunFolder:
    """``path``: the run's output folder (already created by :func:`prepare_output_dir`)."""

    writable = True  # False for the other processes of a distributed run (ReadOnlyRunFolder)

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.summary_file = self.path / "summary.json"
        self.metrics_file = self.path / "metrics.jsonl"
        self._lock_fd: int | None = None

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

    @property
    def noise_file(self) -> Path:
        return self.path / "noise.pt"

    # --- one writer -----------------------------------------------------------------------

    def lock(self) -> None:
        """Refuse a second process writing to this folder (the first one holds the lock
        until it exits, whatever way it exits)."""
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UserError(f"run folder {self.path} is in use by another training process; accepted: a folder no "
                                "other run is writing (wait for it, or choose another hydra.run.dir)") from None
            raise
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

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
            (folder / name).write_text(text, encoding="utf-8")

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
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".metrics.", suffix=".tmp")
            readable_by_others(fd)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in kept))
            os.replace(tmp, self.metrics_file)
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
