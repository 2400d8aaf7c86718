"""The epoch loop of a training run: train, evaluate, checkpoint, log; stop for preemption.

Each epoch: one pass of the training loader (resumed mid-way after a preemption), the
scheduler's step, evaluation of the validation and test loaders, the method's own
metrics and the label-error metrics, the checkpoint (``last``, ``best`` on a new best
validation accuracy, ``epoch_N`` every N), then the log line: a logged epoch always
has its checkpoint.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

from sat.config import validate
from sat.engine import EpochStats, evaluate, predict, train_one_epoch
from sat.run.loggers import RunLogger
from sat.run.preemption import Preemption
from sat.tasks.context import job_num
from sat.tasks.train.job import TrainingJob
from sat.tasks.train.outputs import label_error_metrics


def checkpoint_names(done: int, is_best: bool, every: int, first: int) -> list[str]:
    """``last`` always, ``best`` on a new best, ``epoch_N`` every ``every`` epochs from ``first``."""
    names = ["last"] + (["best"] if is_best else [])
    if every > 0 and done >= first and (done - first) % every == 0:
        names.append(f"epoch_{done}")
    return names


def progress_bar(setting: str, total: int, done: int, title: str) -> Any:
    """A per-batch bar with rate and ETA on the terminal (``trainer.progress=auto``: only
    when stderr is one and outside sweeps, so logs and CI stay clean), else None."""
    if setting == "none" or (setting == "auto" and (job_num() is not None or not sys.stderr.isatty())):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=title, unit="batch", leave=False, dynamic_ncols=True)


def fit(job: TrainingJob, logger: RunLogger) -> None:
    """Train ``job`` to ``trainer.epochs``, or until a signal stops it after a checkpoint."""
    try:
        # under DDP a signal to any process stops all of them at the same step
        with Preemption(agree=job.group.signal_agreement()) as preemption:
            while job.epoch < job.settings.epochs:
                one_epoch(job, logger, preemption)
    finally:
        job.writer.wait()  # the last checkpoint is on disk before the run reports anything
        for loader in (job.loader, *job.eval_loaders.values()):
            loader.close()


def train_pass(job: TrainingJob, preemption: Preemption) -> EpochStats:
    """The (rest of the) epoch's training pass; after a preemption's checkpoint, exits."""
    s, epoch = job.settings, job.epoch
    stats = EpochStats(job.device, job.true_labels, per_sample=bool(job.noisy.any()), batch=job.global_batch)
    if job.partial is not None:  # continue a preempted epoch where it stopped
        stats.load_state_dict(job.partial["stats"])
        job.partial = None
    bar = progress_bar(s.progress if job.group.is_rank0 else "none", len(job.loader), job.loader.position,
                       f"epoch {epoch + 1}/{s.epochs}")
    try:
        complete = train_one_epoch(job.step_model, job.method, job.loader, job.optimizer, epoch, stats,
                                   job.amp_dtype, job.channels_last, should_stop=preemption.requested,
                                   on_step=(lambda _: bar.update()) if bar is not None else None, step=job.step)
    finally:
        if bar is not None:
            bar.close()
    if not complete:
        save(job, ["last"], partial={"stats": stats.state_dict()})
        stopped(job, preemption, epoch, f"checkpoint after {stats.steps} of {len(job.loader)} steps of epoch {epoch + 1}")
    return stats


def evaluation(job: TrainingJob, epoch: int) -> dict[str, float]:
    """The epoch's metrics beyond training: validation and test (every ``eval_every``
    epochs and after the last), the method's own, and how well wrong labels are found."""
    s, metrics = job.settings, {}
    if (epoch + 1) % s.eval_every == 0 or epoch + 1 == s.epochs:
        for split, loader in job.eval_loaders.items():
            result = evaluate(job.model, loader, job.amp_dtype, job.channels_last, job.data.num_classes,
                              job.global_batch)
            metrics.update({f"{split}/{k}": v for k, v in result.items()})
        if "test" in job.eval_loaders:  # self-supervised methods: kNN accuracy, collapse diagnostics
            train = job.data.train.loader(s.eval_batch_size, device=job.device)
            metrics.update(job.method.representation_metrics(job.model, train, job.eval_loaders["test"]))
            train.close()
    return metrics


def one_epoch(job: TrainingJob, logger: RunLogger, preemption: Preemption) -> None:
    s, epoch = job.settings, job.epoch
    tic = time.perf_counter()
    lr = job.optimizer.param_groups[0]["lr"]
    # per-epoch method work (DivideMix's co-divide) only when the epoch starts afresh: a
    # continued epoch keeps what its start computed (method state, in the checkpoint)
    method_metrics = job.method.before_epoch(epoch, job.model, lambda net: train_logits(job, net)) \
        if job.partial is None else {}
    stats = train_pass(job, preemption)
    metrics: dict[str, float] = {"lr": lr, **stats.metrics(epoch), **method_metrics}
    train_s = time.perf_counter() - tic
    job.scheduler.step()
    job.group.broadcast_buffers(job.model)  # DDP: evaluate (and save) rank 0's BatchNorm statistics
    metrics.update(evaluation(job, epoch))
    for split in ("train", "val", "test"):  # error curves are what double-descent plots show
        if f"{split}/acc" in metrics:
            metrics[f"{split}/error"] = 1.0 - metrics[f"{split}/acc"]
    with validate.config_node("method"):  # its refusals name method.<argument>
        metrics.update(job.method.end_epoch(epoch + 1, metrics))
    if job.true_labels is not None:
        metrics.update(label_error_metrics(job.method.soft_labels(), job.train_labels, job.true_labels, job.noisy,
                                           stats))
    eval_s = time.perf_counter() - tic - train_s

    job.epoch = done = epoch + 1
    is_best = "val/acc" in metrics and (job.at_best_val is None or metrics["val/acc"] > job.at_best_val["val/acc"])
    if is_best:
        job.at_best_val = {"epoch": done, "val/acc": metrics["val/acc"], "test/acc": metrics.get("test/acc"),
                           **{k: metrics[k] for k in job.method.headline() if k in metrics}}
    job.metrics = metrics
    ckpt_tic = time.perf_counter()
    save(job, checkpoint_names(done, is_best, s.checkpoint_every, s.checkpoint_from))
    metrics.update({"time/train_s": train_s, "time/eval_s": eval_s,
                    "time/checkpoint_s": time.perf_counter() - ckpt_tic, "time/epoch_s": time.perf_counter() - tic})
    logger.log_epoch(done, metrics)  # after the checkpoint: a logged epoch always has one
    if preemption.requested():
        stopped(job, preemption, done, f"checkpoint after epoch {done}")


def train_logits(job: TrainingJob, network: torch.nn.Module) -> torch.Tensor:
    """``network``'s logits over the whole training split in index order (eval mode, no
    augmentation), for ``Method.before_epoch``."""
    loader = job.data.train.loader(job.settings.eval_batch_size, device=job.device)
    logits, _, index = predict(network, loader, job.amp_dtype, job.channels_last)
    ordered = torch.empty_like(logits)
    ordered[index] = logits
    return ordered


def save(job: TrainingJob, names: list[str], partial: dict[str, Any] | None = None) -> None:
    if job.group.is_rank0:
        job.writer.save(job.state(partial), job.run.checkpoints, names)


def stopped(job: TrainingJob, preemption: Preemption, epochs_done: int, what: str) -> None:
    """The checkpoint is on disk, and (DDP) no process exits before rank 0 has written it;
    then the run is marked preempted and exits for its requeue."""
    job.writer.wait()
    job.group.barrier()
    job.run.set_status("preempted", epochs_done=epochs_done, wall_time_s=job.wall_time_s)
    preemption.exit(what)
