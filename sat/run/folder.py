"""A run's folder: one writer at a time (locked before anything is written in it), its
status, and cutting its logs back to a checkpoint when a run continues in place. Every
file is written through :mod:`sat.run.files` (never through a link)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from sat.errors import UserError
from sat.run.files import write_atomic, write_json_atomic
from sat.run.lock import held, hold_lock, release_lock

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


def refuse_other_task(folder: Path, job: str) -> None:
    """evaluate.py or attack.py pointed at a training run's folder would replace its
    ``.hydra`` record with their own (and sat.report would no longer see the run)."""
    if job != "train" and ((folder / "checkpoints").is_dir() or (folder / "train.log").exists()):
        raise UserError(f"hydra.run.dir={folder} holds a training run; {job}.py writes its results into a folder of its "
                        f"own (it also saves them beside the checkpoint); accepted: another hydra.run.dir, or none")


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

    def status(self) -> str | None:
        """What ``summary.json`` says, with ``running`` told apart: ``running`` while a
        process holds the folder's lock, ``killed`` when none does (it died without a
        word: OOM, a lost node); None without a summary."""
        summary = self.read_summary()
        status = summary.get("status") if isinstance(summary, dict) else None
        return "killed" if status == "running" and not held(self.path) else status

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
