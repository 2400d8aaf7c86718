"""Run outputs: TensorBoard events, ``metrics.jsonl`` (one line per epoch) and
``summary.json``, plus a concise console line per epoch."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

log = logging.getLogger("sat")

HParam = float | int | str | bool


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, HParam]:
    """``{"method": {"alpha": 0.9}}`` -> ``{"method.alpha": 0.9}``; lists become strings
    and ``None`` becomes ``"null"`` (TensorBoard hparams take scalars and strings)."""
    flat: dict[str, HParam] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = "null" if value is None else str(value)
    return flat


def _pct(x: float | None) -> str:
    return "  -  " if x is None else f"{100 * x:5.1f}%"


class RunLogger:
    """Writes one run's per-epoch metrics and its summary into ``out_dir``."""

    def __init__(self, out_dir: str | Path, total_epochs: int, purge_step: int | None = None):
        """``purge_step``: a run continued from a checkpoint logs its later epochs again;
        TensorBoard then drops the events of steps >= it from the older event files."""
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.total_epochs = total_epochs
        self.writer = SummaryWriter(log_dir=str(self.out_dir), purge_step=purge_step)
        self.jsonl = open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8")

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """``epoch``: the number of epochs completed (1 after the first)."""
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, global_step=epoch)
        self.writer.flush()
        self.jsonl.write(json.dumps({"epoch": epoch, **metrics}) + "\n")
        self.jsonl.flush()
        log.info(
            "epoch %*d/%d | loss %.4f | train %s | val %s | test %s | lr %.4g | %.1fs",
            len(str(self.total_epochs)), epoch, self.total_epochs, metrics.get("train/loss", math.nan),
            _pct(metrics.get("train/acc")), _pct(metrics.get("val/acc")), _pct(metrics.get("test/acc")),
            metrics.get("lr", math.nan), metrics.get("time/epoch_s", math.nan),
        )

    def log_hparams(self, hparams: dict[str, HParam], results: dict[str, float]) -> None:
        """One HParams-tab entry: the run's settings against its final results."""
        for summary in hparams_summary(hparams, results):
            self.writer.file_writer.add_summary(summary)
        for name, value in results.items():
            self.writer.add_scalar(name, value)

    def close(self) -> None:
        self.writer.close()
        self.jsonl.close()
