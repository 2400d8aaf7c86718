"""Run outputs per epoch: ``metrics.jsonl`` (always: the run's own record, which
``sat.report`` and resume read), a console line, and one experiment tracker chosen by
the ``logger`` config group: TensorBoard (default), CSV, Weights & Biases, or none.

Every tracker takes ``log_epoch``, ``log_hparams`` and ``close``, and is told where a
continued run starts again (``first_epoch``), so nothing is logged twice.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import uuid
from pathlib import Path
from typing import Any, Protocol

from sat.run.files import open_append, write_atomic, write_text_atomic

log = logging.getLogger("sat")

HParam = float | int | str | bool


def hparam(value: Any) -> HParam:
    """A config value as TensorBoard's HParams tab takes it: a scalar or a string (lists
    as their text, ``None`` as ``"null"``)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return "null" if value is None else str(value)


def _pct(x: float | None) -> str:
    return "  -  " if x is None else f"{100 * x:5.1f}%"


class Tracker(Protocol):
    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...
    def log_hparams(self, hparams: dict[str, HParam], results: dict[str, float]) -> None: ...
    def close(self) -> None: ...


class TensorBoardLogger:
    """TensorBoard events in the run folder (``tensorboard --logdir RUN``); an HParams
    entry at the end. A continued run purges the older files' events from its first epoch on."""

    def __init__(self, out_dir: str | Path, first_epoch: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(out_dir), purge_step=first_epoch)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, global_step=epoch)
        self.writer.flush()

    def log_hparams(self, hparams: dict[str, HParam], results: dict[str, float]) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        for summary in hparams_summary(hparams, results):
            self.writer.file_writer.add_summary(summary)
        for name, value in results.items():
            self.writer.add_scalar(name, value)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class CSVLogger:
    """``metrics.csv``: one row per epoch, a column per metric (new metrics add columns,
    so the file is rewritten when one appears), and ``hparams.csv`` at the end."""

    def __init__(self, out_dir: str | Path, first_epoch: int | None = None):
        self.path = Path(out_dir) / "metrics.csv"
        self.rows: list[dict[str, Any]] = []
        if self.path.is_file() and first_epoch is not None:  # a continued run keeps its earlier epochs
            with open(self.path, newline="", encoding="utf-8") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < first_epoch]
        self._write()

    def _write(self) -> None:
        fields = list(dict.fromkeys(k for r in [{"epoch": 0}, *self.rows] for k in r))

        def table(f) -> None:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.rows)

        write_text_atomic(self.path, table)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.rows.append({"epoch": epoch, **metrics})
        self._write()

    def log_hparams(self, hparams: dict[str, HParam], results: dict[str, float]) -> None:
        def table(f) -> None:
            writer = csv.writer(f)
            writer.writerow(["name", "value"])
            writer.writerows(sorted({**hparams, **results}.items()))

        write_text_atomic(self.path.parent / "hparams.csv", table)

    def close(self) -> None:
        pass


class WandbLogger:
    """Weights & Biases (``pip install -e '.[wandb]'``). ``mode=offline`` (the default)
    needs no network or account: ``wandb sync RUN/wandb/offline-run-*`` uploads later.
    The run id is kept in the run folder, so a continued run logs into the same W&B run."""

    def __init__(self, out_dir: str | Path, first_epoch: int | None = None, project: str = "sat",
                 mode: str = "offline", entity: str | None = None, name: str | None = None,
                 tags: list[str] | None = None):
        try:
            import wandb
        except ImportError:
            from sat.errors import UserError

            raise UserError("logger=wandb needs the wandb package; accepted: pip install -e '.[wandb]', or "
                            "logger=tensorboard|csv|none") from None
        out = Path(out_dir)
        id_file = out / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
        write_atomic(id_file, run_id)
        self.run = wandb.init(project=project, entity=entity, name=name or out.name, tags=tags, mode=mode,
                              dir=str(out), id=run_id, resume="allow")
        self.first_epoch = first_epoch or 1

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.run.log({"epoch": epoch, **metrics}, step=epoch)

    def log_hparams(self, hparams: dict[str, HParam], results: dict[str, float]) -> None:
        self.run.config.update(hparams, allow_val_change=True)
        self.run.summary.update(results)

    def close(self) -> None:
        self.run.finish()


class Trackers:
    """Several trackers as one (``logger=[tensorboard,csv]``): every epoch and the HParams
    entry go to each; closing closes each, also when one of them fails to."""

    def __init__(self, trackers: list[Tracker]):
        self.trackers = list(trackers)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        for tracker in self.trackers:
            tracker.log_epoch(epoch, metrics)

    def log_hparams(self, hparams: dict[str, HParam], results: dict[str, float]) -> None:
        for tracker in self.trackers:
            tracker.log_hparams(hparams, results)

    def close(self) -> None:
        failed: BaseException | None = None
        for tracker in self.trackers:
            try:
                tracker.close()
            except BaseException as e:  # noqa: BLE001  (the others are closed first)
                failed = failed or e
        if failed is not None:
            raise failed


def tracker_pointer(logger: str | None, run_dir: str | Path) -> tuple[str, str] | None:
    """Where the tracker chosen by ``logger=`` shows a run: the last line of the
    end-of-run box (None for ``logger=none`` or a tracker of the user's own)."""
    run = Path(run_dir)
    if logger == "tensorboard":
        return "tensorboard", f"tensorboard --logdir {run}"
    if logger == "csv":
        return "metrics", f"{run / 'metrics.csv'} (and hparams.csv)"
    if logger == "wandb":
        offline = sorted((run / "wandb").glob("offline-run-*"))
        return "wandb", f"wandb sync {offline[-1]}" if offline else "the run's page on W&B (its URL is in the log)"
    return None


class RunLogger:
    """Writes one run's per-epoch metrics into ``out_dir``: ``metrics.jsonl``, the
    console line, and the chosen tracker."""

    def __init__(self, out_dir: str | Path, total_epochs: int, tracker: Tracker | None = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.total_epochs = total_epochs
        self.tracker = tracker
        self.jsonl = open_append(self.out_dir / "metrics.jsonl")  # never through a link

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """``epoch``: the number of epochs completed (1 after the first)."""
        self.jsonl.write(json.dumps({"epoch": epoch, **metrics}) + "\n")
        self.jsonl.flush()
        if self.tracker is not None:
            self.tracker.log_epoch(epoch, metrics)
        log.info(
            "epoch %*d/%d | loss %.4f | train %s | val %s | test %s | lr %.4g | %.1fs",
            len(str(self.total_epochs)), epoch, self.total_epochs, metrics.get("train/loss", math.nan),
            _pct(metrics.get("train/acc")), _pct(metrics.get("val/acc")), _pct(metrics.get("test/acc")),
            metrics.get("lr", math.nan), metrics.get("time/epoch_s", math.nan),
        )

    def log_hparams(self, hparams: dict[str, HParam], results: dict[str, float]) -> None:
        """One entry of the run's settings against its final results."""
        if self.tracker is not None:
            self.tracker.log_hparams(hparams, results)

    def close(self) -> None:
        if self.tracker is not None:
            self.tracker.close()
        self.jsonl.close()


class NullRunLogger:
    """What the other processes of a distributed run log with: nothing (rank 0 writes)."""

    def __enter__(self) -> NullRunLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def log_hparams(self, hparams: dict[str, HParam], results: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass
