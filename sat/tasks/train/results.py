"""What a training run reports: its summary (``summary.json``, also what the task
returns) and, when it ends, the refined labels and TensorBoard's HParams entry."""

from __future__ import annotations

from typing import Any

from sat.data.splits import FileSplit, ImageSet
from sat.run.loggers import RunLogger
from sat.tasks.context import choices, packages_used
from sat.tasks.train.job import TrainingJob
from sat.tasks.train.outputs import RunPage, headline, hparams_of, results_of, write_soft_labels
from sat.tasks.train.trackers import selected


def summary(job: TrainingJob) -> dict[str, Any]:
    config = job.config
    return {
        "status": "finished" if job.epoch >= job.settings.epochs else "running",
        "name": job.cfg.get("name"), "output_dir": str(job.run.path), "seed": job.seed,
        "epochs": job.settings.epochs, "epochs_done": job.epoch, "params": job.params,
        "wall_time_s": job.wall_time_s, "choices": choices(), "packages": packages_used(config),
        "deterministic": job.settings.deterministic, "method": job.method.hparams(),
        "headline": headline(job.method.headline(), job.metrics, job.at_best_val),
        "noise": job.data.noise_summary(), "final": job.metrics, "at_best_val": job.at_best_val,
        "loader": job.data.loader_kind,
        "distributed": job.group.describe() | {"sync_batchnorm": job.settings.sync_batchnorm},
        "init_from": job.init_from, "loggers": list(selected(job.cfg)),
    }


def finish(job: TrainingJob, logger: RunLogger) -> dict[str, Any]:
    """The finished run's files (soft labels, label errors and their review page),
    HParams entry and summary."""
    result = summary(job)
    if job.run.writable:
        train, data = job.data.train, job.data.data
        page = RunPage(job.run.checkpoints / "last.pt", job.epoch, data.name, result["noise"], data.class_names,
                       images=train.images if isinstance(train, ImageSet) else None,
                       image_root=train.root if isinstance(train, FileSplit) else None)
        write_soft_labels(job.run.path, job.method, job.train_labels, job.true_labels, train.ids, train.file_names(),
                          page)
    logger.log_hparams(hparams_of(job.config, job.method.hparams()), results_of(job.metrics, job.params, job.at_best_val))
    job.run.write_summary(result)
    return result
