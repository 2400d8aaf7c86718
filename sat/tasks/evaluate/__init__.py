"""The evaluate task: one report (``report=<name>``, a class of conf/report/) over one
checkpoint, or several side by side, each restored from its stored config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from sat.config import validate
from sat.config.build import USER_CONFIG
from sat.config.schema import read
from sat.errors import UserError
from sat.run.folder import prepare_output_dir
from sat.tasks.context import choices
from sat.tasks.device import resolve_device, resolve_precision
from sat.tasks.evaluate.base import Evaluation, Report
from sat.tasks.restore import restore_run, trusted_packages


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


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the checkpoint(s) ``cfg`` names with the report it chooses; returns the
    report's result."""
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
    out = prepare_output_dir(read(cfg, "paths.output_dir"))
    cache: dict = {}
    runs = [(c, restore_run(c, device, data_dir(cfg), trusted_packages(cfg), cache)) for c in checkpoints]
    if report.needs_images_on_device and any(r.data.loader_kind != "device" for _, r in runs):
        raise UserError(f"report={name} needs the run's images on the device; accepted: runs of datasets that fit "
                        "(loader.kind=device), or report=accuracy")
    with validate.config_node("report"):  # the report's refusals name report.<argument>
        return report(Evaluation(runs, out, batch_size, amp_dtype, seed))
