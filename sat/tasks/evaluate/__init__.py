"""The evaluate task: one report (``report=<name>``, a class of conf/report/) over one
checkpoint, or several side by side, each restored from its stored config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig

from sat.config import validate
from sat.config.build import USER_CONFIG
from sat.config.schema import read
from sat.errors import UserError
from sat.run.folder import prepare_output_dir
from sat.tasks.context import choices
from sat.tasks.device import resolve_device, resolve_precision
from sat.tasks.evaluate.base import Evaluation, Report
from sat.tasks.restore import check_checkpoint, restore_run, trusted_packages


def checkpoint_list(value: Any) -> list[Path]:
    """``checkpoint=a.pt`` or ``checkpoint=[a.pt,b.pt]``."""
    values = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    if not values:
        raise UserError("checkpoint=[] names no checkpoint; accepted: checkpoint=RUN/checkpoints/best.pt or a list")
    return [Path(str(v)).expanduser() for v in values]


def data_dir(cfg: DictConfig) -> str:
    """Where dataset files are read from: ``dataset_root=`` or the current data folder,
    never a path stored in the checkpoint."""
    return str(read(cfg, "dataset_root") or read(cfg, "paths.data_dir"))


def _settings(cfg: DictConfig) -> tuple[Report, str, list[Path], torch.device, Any, int, int]:
    """Every value of the command, checked: ``(report, its name, checkpoints, device,
    autocast dtype, batch size, seed)``."""
    report = USER_CONFIG.build(cfg.report, "report")
    name = choices().get("report") or getattr(report, "name", type(report).__name__)
    if not isinstance(report, Report):
        raise UserError(f"report={name} built a {type(report).__name__}; accepted: a sat.tasks.evaluate.base.Report")
    checkpoints = checkpoint_list(read(cfg, "checkpoint"))
    if len(checkpoints) > 1 and not report.takes_several:
        raise UserError(f"checkpoint= names {len(checkpoints)} checkpoints; report={name} takes one (evaluate several "
                        "with python evaluate.py -m checkpoint=a.pt,b.pt)")
    device = resolve_device(read(cfg, "device"))
    amp_dtype = resolve_precision(read(cfg, "trainer.precision"), device)
    batch_size = validate.positive_int("trainer.eval_batch_size", read(cfg, "trainer.eval_batch_size"))
    seed = validate.number("seed", read(cfg, "seed"), integer=True)
    return report, name, checkpoints, device, amp_dtype, batch_size, seed


def check(cfg: DictConfig) -> str:
    """``dry_run=true``: every value checked and each checkpoint read and checked (its
    stored config through the trust registry, its weights against the model it describes,
    the memory), without reading data or writing anything; one line saying what would run."""
    report, name, checkpoints, device, *_ = _settings(cfg)
    lines = [check_checkpoint(c, device, data_dir(cfg), trusted_packages(cfg)) for c in checkpoints]
    return f"report={name} of " + "; ".join(lines)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the checkpoint(s) ``cfg`` names with the report it chooses; returns the
    report's result."""
    report, name, checkpoints, device, amp_dtype, batch_size, seed = _settings(cfg)
    out = prepare_output_dir(read(cfg, "paths.output_dir"))
    cache: dict = {}
    runs = [(c, restore_run(c, device, data_dir(cfg), trusted_packages(cfg), cache)) for c in checkpoints]
    if report.needs_images_on_device and any(r.data.loader_kind != "device" for _, r in runs):
        raise UserError(f"report={name} needs the run's images on the device; accepted: runs of datasets that fit "
                        "(loader.kind=device), or report=accuracy")
    with validate.config_node("report"):  # the report's refusals name report.<argument>
        return report(Evaluation(runs, out, batch_size, amp_dtype, seed))
