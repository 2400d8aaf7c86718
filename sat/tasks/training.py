"""The train task: one model, as the config describes, with logging and checkpoints.

A run folder that already holds a checkpoint is continued in place (a requeued or
rerun job): its logs are cut back to the checkpoint's epoch and training goes on from
there, bit for bit as if it had never stopped. ``resume=PATH`` continues another
run's checkpoint in this folder instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from sat import distributed
from sat.checkpoint import (CheckpointWriter, checkpoint_epoch, load_checkpoint, repair, rng_state,
                            set_rng_state)
from sat.data.datasets import DataSource
from sat.data.folder import FolderDataset
from sat.data.stream import make_stream_loader
from sat.data.loader import DeviceLoader
from sat.data.noise import Noise
from sat.ddp import (DataParallelStep, check_batch_split, check_last_batch, check_sync_batchnorm, convert_sync_batchnorm,
                     evaluate_sharded, has_batchnorm)
from sat.distributed import SINGLE, Distributed, ShardedBatch
from sat.engine import EpochStats, evaluate as evaluate_model, train_one_epoch
from sat.errors import UserError
from sat.eval_stream import evaluate_loader
from sat.global_batch import WHOLE_BATCH
from sat.loggers import NullRunLogger, RunLogger
from sat.methods.base import Method
from sat.models import count_parameters
from sat.preemption import Preempted, Preemption
from sat.rundir import ReadOnlyRunFolder, RunFolder, prepare_output_dir
from sat.tasks import settings as run_settings
from sat.tasks.common import (apply_noise, build, build_model, choices, job_num, load_source, packages_used, plain,
                              resolve_device, resolve_precision, set_normalization)
from sat.tasks.outputs import hparams_of, label_error_metrics, print_run_table, results_of, write_soft_labels
from sat.tasks.settings import TrainerSettings, read
from sat.tasks.streaming import StreamData, as_tensors, loader_kind, stream_data
from sat import validate

log = logging.getLogger("sat")

# What a checkpoint's state means: continuing it under other values of these would
# silently train something else (the optimizer and schedule states in the checkpoint
# would override the new values), so a changed one is refused.
RESUME_KEYS = ("dataset", "model", "noise", "method", "augment", "optimizer", "scheduler", "seed",
               "trainer.epochs", "trainer.batch_size", "trainer.precision")
# ... except these, which only say where files are.
RESUME_IGNORED = {"dataset": ("root", "download"), "noise": ("from_file",)}


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


def check_resumable(now: dict[str, Any], state: dict[str, Any], source: Path) -> None:
    changed = changed_settings(now, state["config"])
    if changed:
        raise UserError(
            f"resume: {source} was trained with other settings: {', '.join(changed)}. A continued run keeps its "
            f"checkpoint's data, model, optimizer, schedule and length; rerun with the run's own settings (its "
            f"folder's .hydra/config.yaml) or start a new run in another folder")


def _checkpoint_names(done: int, is_best: bool, every: int, first: int) -> list[str]:
    """``last`` always, ``best`` on a new best, ``epoch_N`` every ``every`` epochs from ``first``."""
    names = ["last"] + (["best"] if is_best else [])
    if every > 0 and done >= first and (done - first) % every == 0:
        names.append(f"epoch_{done}")
    return names


def _setup_torch(settings: TrainerSettings, device_name: Any, seed: int,
                 device: torch.device | None = None) -> tuple[torch.device, Any, bool]:
    """Device (``device`` where the process group chose it), autocast dtype and memory
    format for this run; seeds PyTorch."""
    device = device or resolve_device(device_name, job_num())
    amp_dtype = resolve_precision(settings.precision, device)
    if settings.num_threads:  # parallel CPU jobs of a sweep must share the cores
        torch.set_num_threads(settings.num_threads)
    if settings.deterministic:
        # cuBLAS needs a fixed workspace for repeatable results (set before its first use)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(seed)
    return device, amp_dtype, device.type == "cuda" and settings.channels_last


def progress_bar(setting: str, total: int, done: int, title: str) -> Any:
    """A per-batch bar with rate and ETA on the terminal (``trainer.progress=auto``: only
    when stderr is one and outside sweeps, so logs and CI stay clean), else None."""
    if setting == "none" or (setting == "auto" and (job_num() is not None or not sys.stderr.isatty())):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=title, unit="batch", leave=False, dynamic_ncols=True)


def _fused(node: Any, device: torch.device) -> dict[str, Any]:
    """On CUDA, PyTorch's fused SGD/Adam/AdamW step (one kernel for all parameters: about
    15% more images/s for ResNet-34 on an H100) unless the config chooses itself."""
    fusable = ("torch.optim.SGD", "torch.optim.Adam", "torch.optim.AdamW")
    if device.type != "cuda" or node.get("_target_") not in fusable or "fused" in node or "foreach" in node:
        return {}
    return {"fused": True}


def _optimizer_checks(node: Any) -> None:
    for key in ("lr", "momentum", "weight_decay"):
        if key in node:
            validate.number(f"optimizer.{key}", node[key], lo=0.0)


class TrainingJob:
    """Everything one run trains with, built (and every setting checked) from the
    config, then :meth:`fit` runs the epochs and :meth:`finish` writes the results."""

    def __init__(self, cfg: DictConfig, settings: TrainerSettings, seed: int, run: RunFolder,
                 resumed: dict[str, Any] | None, group: Distributed = SINGLE):
        self.cfg, self.settings, self.seed, self.run, self.group = cfg, settings, seed, run, group
        self.config = plain(cfg)
        check_batch_split(settings.batch_size, group.world_size)
        self.device, self.amp_dtype, self.channels_last = _setup_torch(settings, read(cfg, "device"), seed, group.device)
        # the run's .hydra record as it was first written, kept with every checkpoint
        self.hydra_files = resumed.get("hydra_files") if resumed is not None else run.hydra_files()

        # Every object is built (and so every value checked) before any data is read.
        source = build(cfg.dataset, "dataset", DataSource)
        noise = build(cfg.noise, "noise", Noise)
        self.method = build(cfg.method, "method", Method)
        self.method.schedule(settings.epochs)
        augment = build(cfg.augment, "augment", object) if cfg.get("augment") is not None else None
        self.model_outputs = source.num_classes + int(getattr(self.method, "extra_outputs", 0))
        model = build_model(cfg.model, self.model_outputs, source.input_shape)
        # A method with a network of its own (co-teaching's peer) gets the same
        # architecture; the optimizer then trains both.
        self.method.attach_model(lambda: build_model(cfg.model, self.model_outputs, source.input_shape))
        _optimizer_checks(cfg.optimizer)
        try:
            params = list(model.parameters()) + list(self.method.parameters())
            self.optimizer = build(cfg.optimizer, "optimizer", object)(params, **_fused(cfg.optimizer, self.device))
            self.scheduler = build(cfg.scheduler, "scheduler", object)(self.optimizer)
        except (ValueError, TypeError) as e:
            raise UserError(f"optimizer/scheduler: {str(e).splitlines()[0]}") from None

        raw = load_source(source)
        self.loader_kind = "device"
        if isinstance(raw, FolderDataset):  # decoded onto the device if it fits, else streamed
            self.loader_kind = loader_kind(raw, self.device)
            raw = as_tensors(raw) if self.loader_kind == "device" else raw
        nd = stream_data(raw, noise) if isinstance(raw, FolderDataset) else apply_noise(raw, noise)
        if resumed is not None and resumed["noise_sha256"] != nd.pattern.sha256():
            raise UserError(f"resume: the noise drawn now differs from the checkpoint's (hash "
                            f"{resumed['noise_sha256'][:12]}); use noise.from_file=<the run's noise.pt>")
        self.nd, self.data = nd, nd.data
        set_normalization([*model.modules(), *self.method.modules()], nd.data)
        self.model = model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_labels = nd.train.labels.to(self.device)
        # without the clean labels (real noisy datasets) there is nothing to measure memorisation against
        known = nd.true_train_labels is not None
        self.true_labels = nd.true_train_labels.to(self.device) if known else None
        self.noisy = (self.train_labels != self.true_labels) if known else torch.zeros_like(self.train_labels).bool()
        self.method.setup(self.train_labels, self.data.num_classes)
        self.method.to(self.device)
        if self.channels_last:
            self.method.to(memory_format=torch.channels_last)
        self.step_model = torch.compile(self.model, mode=settings.compile_mode) if settings.compile else self.model
        if isinstance(nd, StreamData):
            self.loader = make_stream_loader(raw, nd.train, settings.batch_size, train=True, labels=nd.train.labels,
                                             seed=seed, device=self.device)
            self.eval_sets = {split: make_stream_loader(raw, files, settings.eval_batch_size, train=False,
                                                        device=self.device)
                              for split, files in (("val", nd.val), ("test", raw.test)) if files is not None}
        else:
            self.loader = DeviceLoader(nd.train.images.to(self.device), self.train_labels, settings.batch_size,
                                       shuffle=True, augment=augment, seed=seed, rank=group.rank,
                                       world_size=group.world_size)
            self.eval_sets = {"val": (nd.val.images.to(self.device), nd.val.labels.to(self.device)),
                              "test": (self.data.test.images.to(self.device), self.data.test.labels.to(self.device))}
        self._check_distributed()
        self.params = count_parameters(self.model)

        self.writer = CheckpointWriter(background=settings.async_checkpoint)
        self.epoch, self.at_best_val, self.metrics = 0, None, {}
        self.partial: dict[str, Any] | None = None  # mid-epoch stats of a preempted run
        if resumed is not None:
            self._restore(resumed)
        self.global_batch, self.step = WHOLE_BATCH, None  # a DDP run's: see _distribute

    # --- distributed ------------------------------------------------------------------

    def distribute(self) -> None:
        """Under DDP (a collective, after the job is built on every process): SyncBatchNorm
        if asked for, per-sample state through gathers, the networks wrapped in DDP."""
        group, s = self.group, self.settings
        if not group.enabled:
            if s.sync_batchnorm:
                log.info("trainer.sync_batchnorm=true has no effect in a single process")
            return
        networks = [self.model, *self.method.networks()]
        if s.sync_batchnorm:
            convert_sync_batchnorm(networks, self.device)
        elif any(has_batchnorm(net) for net in networks):
            log.info("BatchNorm normalises over each process's %d samples, not the global batch of %d "
                     "(trainer.sync_batchnorm=true for global statistics)", s.batch_size // group.world_size,
                     s.batch_size)
        self.global_batch = ShardedBatch(group, lambda: self.loader.shard_sizes)
        self.step = DataParallelStep(self.step_model, self.method, group, self.global_batch)

    def _check_distributed(self) -> None:
        """What a DDP run needs of the settings, checked before it starts."""
        if self.group.enabled:
            if not isinstance(self.loader, DeviceLoader):
                raise UserError(f"dataset.loader={self.loader_kind} is not supported under DDP yet (its loader does not "
                                "shard the epoch over the processes); accepted: dataset.loader=device")
            check_last_batch(len(self.loader.labels), self.settings.batch_size, self.group.world_size)
            if self.settings.sync_batchnorm:
                check_sync_batchnorm(self.device)

    def _evaluate(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        args = (self.amp_dtype, self.channels_last, self.data.num_classes)
        if self.group.enabled:  # each process scores a part of the set
            return evaluate_sharded(self.model, images, labels, self.settings.eval_batch_size, self.group, *args)
        return evaluate_model(self.model, images, labels, self.settings.eval_batch_size, *args)

    # --- state --------------------------------------------------------------------------

    def _restore(self, state: dict[str, Any]) -> None:
        for obj, key in [(self.model, "model"), (self.optimizer, "optimizer"), (self.scheduler, "scheduler"),
                         (self.method, "method"), (self.loader, "loader")]:
            obj.load_state_dict(state[key])
        set_rng_state(state["rng"])
        self.epoch, self.at_best_val = int(state["epoch"]), state["at_best_val"]
        self.metrics, self.partial = dict(state.get("metrics") or {}), state.get("partial")

    def _state(self, partial: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "epoch": self.epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "method": self.method.state_dict(),
            "loader": self.loader.state_dict(), "rng": rng_state(), "at_best_val": self.at_best_val,
            "metrics": self.metrics, "partial": partial, "config": self.config,
            "noise_sha256": self.nd.pattern.sha256(), "params": self.params, "model_outputs": self.model_outputs,
            "packages": packages_used(self.config), "hydra_files": self.hydra_files, "loader_kind": self.loader_kind,
        }

    # --- the epochs ---------------------------------------------------------------------

    def fit(self, logger: RunLogger) -> None:
        try:
            # under DDP a signal to any process stops all of them at the same step
            with Preemption(agree=self.group.signal_agreement()) as preemption:
                while self.epoch < self.settings.epochs:
                    self._one_epoch(logger, preemption)
        finally:
            self.writer.wait()  # the last checkpoint is on disk before the run reports anything

    def _one_epoch(self, logger: RunLogger, preemption: Preemption) -> None:
        s, epoch = self.settings, self.epoch
        tic = time.perf_counter()
        stats = EpochStats(self.device, self.true_labels, per_sample=bool(self.noisy.any()), batch=self.global_batch)
        if self.partial is not None:  # continue a preempted epoch where it stopped
            stats.load_state_dict(self.partial["stats"])
            self.partial = None
        lr = self.optimizer.param_groups[0]["lr"]
        bar = progress_bar(s.progress if self.group.is_rank0 else "none", len(self.loader), self.loader.position, f"epoch {epoch + 1}/{s.epochs}")
        try:
            complete = train_one_epoch(self.step_model, self.method, self.loader, self.optimizer, epoch, stats,
                                       self.amp_dtype, self.channels_last, should_stop=preemption.requested,
                                       on_step=(lambda _: bar.update()) if bar is not None else None,
                                       step=self.step)
        finally:
            if bar is not None:
                bar.close()
        if not complete:
            self._save(["last"], partial={"stats": stats.state_dict()})
            self._written()
            self.run.set_status("preempted", epochs_done=epoch)
            preemption.exit(f"checkpoint after {stats.steps} of {len(self.loader)} steps of epoch {epoch + 1}")
        metrics: dict[str, float] = {"lr": lr, **stats.metrics(epoch)}
        train_s = time.perf_counter() - tic
        self.scheduler.step()
        self.group.broadcast_buffers(self.model)  # DDP: evaluate (and save) rank 0's BatchNorm statistics
        evaluate_now = (epoch + 1) % s.eval_every == 0 or epoch + 1 == s.epochs
        for split, evaluation in (self.eval_sets.items() if evaluate_now else ()):
            if isinstance(evaluation, tuple):
                result = self._evaluate(*evaluation)
            else:  # a streamed split
                result = evaluate_loader(self.model, evaluation, self.amp_dtype, self.channels_last,
                                         self.data.num_classes)
            metrics.update({f"{split}/{k}": v for k, v in result.items()})
        if evaluate_now and isinstance(self.loader, DeviceLoader):  # SSL: kNN accuracy, collapse diagnostics
            metrics.update(self.method.representation_metrics(self.model, self.loader.images, self.train_labels,
                                                              *self.eval_sets["test"]))
        for split in ("train", "val", "test"):  # error curves are what double-descent plots show
            if f"{split}/acc" in metrics:
                metrics[f"{split}/error"] = 1.0 - metrics[f"{split}/acc"]
        metrics.update(self.method.end_epoch(epoch + 1, metrics))
        if self.true_labels is not None:
            metrics.update(label_error_metrics(self.method.soft_labels(), self.train_labels, self.true_labels,
                                               self.noisy, stats))
        eval_s = time.perf_counter() - tic - train_s

        self.epoch = done = epoch + 1
        is_best = "val/acc" in metrics and (self.at_best_val is None or metrics["val/acc"] > self.at_best_val["val/acc"])
        if is_best:
            self.at_best_val = {"epoch": done, "val/acc": metrics["val/acc"], "test/acc": metrics["test/acc"]}
        self.metrics = metrics
        ckpt_tic = time.perf_counter()
        self._save(_checkpoint_names(done, is_best, s.checkpoint_every, s.checkpoint_from))
        metrics.update({"time/train_s": train_s, "time/eval_s": eval_s,
                        "time/checkpoint_s": time.perf_counter() - ckpt_tic, "time/epoch_s": time.perf_counter() - tic})
        logger.log_epoch(done, metrics)  # after the checkpoint: a logged epoch always has one
        if preemption.requested():
            self._written()
            self.run.set_status("preempted", epochs_done=done)
            preemption.exit(f"checkpoint after epoch {done}")

    def _save(self, names: list[str], partial: dict[str, Any] | None = None) -> None:
        if self.group.is_rank0:
            self.writer.save(self._state(partial), self.run.checkpoints, names)

    def _written(self) -> None:
        """The checkpoint is on disk, and (DDP) no process exits before rank 0 has written it."""
        self.writer.wait()
        self.group.barrier()

    # --- results ------------------------------------------------------------------------

    def summary(self, wall_time_s: float) -> dict[str, Any]:
        return {
            "status": "finished" if self.epoch >= self.settings.epochs else "running",
            "name": self.cfg.get("name"), "output_dir": str(self.run.path), "seed": self.seed,
            "epochs": self.settings.epochs, "epochs_done": self.epoch, "params": self.params,
            "wall_time_s": wall_time_s, "choices": choices(), "packages": packages_used(self.config),
            "deterministic": self.settings.deterministic, "method": self.method.hparams(),
            "noise": self.nd.noise_summary(), "final": self.metrics, "at_best_val": self.at_best_val,
            "distributed": self.group.describe() | {"sync_batchnorm": self.settings.sync_batchnorm},
        }

    def finish(self, logger: RunLogger, wall_time_s: float) -> dict[str, Any]:
        summary = self.summary(wall_time_s)
        if self.run.writable:
            files = [self.nd.train.file(i) for i in range(len(self.nd.train))] if isinstance(self.nd, StreamData) else None
            write_soft_labels(self.run.path, self.method, self.train_labels, self.true_labels, self.nd.train.ids, files)
        logger.log_hparams(hparams_of(self.config, self.method.hparams()), results_of(self.metrics, self.params))
        self.run.write_summary(summary)
        return summary


# --- where a run continues from ----------------------------------------------------------


def _resume_source(run: RunFolder, resume: str) -> Path | None:
    """``auto``: this folder's last.pt if it has one (after finishing an interrupted
    publication of its files); otherwise the given checkpoint."""
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


def _fork_history(source: Path, run: RunFolder, state: dict[str, Any]) -> None:
    """Continuing another folder's checkpoint here: bring its metrics up to the
    checkpoint's epoch and its best.pt (if it holds the recorded best epoch), so this
    folder holds the whole run."""
    src = source.resolve().parent.parent
    if src == run.path.resolve() or not run.writable:
        return
    epoch, best = int(state["epoch"]), state.get("at_best_val")
    if (src / "metrics.jsonl").is_file() and not run.metrics_file.exists():
        shutil.copyfile(src / "metrics.jsonl", run.metrics_file)
        run.cut_metrics(epoch)
    if not best:
        return
    # the recorded best epoch's state: the checkpoint itself, or a file of the source run holding that epoch
    candidates = [source] if best["epoch"] == epoch else \
        [src / "checkpoints" / "best.pt", src / "checkpoints" / f"epoch_{best['epoch']}.pt"]
    for candidate in candidates:
        if candidate.is_file() and checkpoint_epoch(candidate) == best["epoch"]:
            run.checkpoints.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(candidate, run.checkpoints / "best.pt")
            return
    log.warning("no checkpoint of the best epoch (%d) in %s: best.pt appears with the next best epoch",
                best["epoch"], src)


def _cut_logs(run: RunFolder, state: dict[str, Any] | None) -> tuple[int, bool]:
    """Cut metrics.jsonl back to the checkpoint's epoch (0 for a fresh start). Returns
    the first epoch TensorBoard must drop from older event files, and whether the
    checkpoint's own epoch lacks its log line (killed between checkpoint and log)."""
    epoch = int(state["epoch"]) if state is not None else 0
    dropped = run.cut_metrics(epoch)
    if dropped:
        log.info("metrics.jsonl: dropped %d line(s) logged after epoch %d", dropped, epoch)
    missing = epoch > 0 and epoch not in run.logged_epochs() and bool(state.get("metrics"))
    return (epoch if missing else epoch + 1), missing


# --- the task ---------------------------------------------------------------------------


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train one model as ``cfg`` describes; returns the run's summary. Under torchrun
    (or Slurm with several tasks) every process runs this: one DDP run, whose folder
    rank 0 alone writes."""
    wall_start = time.perf_counter()
    group = distributed.setup(read(cfg, "device"))
    run = _open_run_folder(group, read(cfg, "paths.output_dir"))
    fresh = run.last_checkpoint() is None
    started = settled = False
    try:
        settings = TrainerSettings.from_config(read(cfg, "trainer"))
        seed, resume = run_settings.seed(cfg), run_settings.resume(cfg)
        run_settings.objective(cfg)  # checked now, used when the run ends
        make_tracker = build(cfg.logger, "logger", object) if cfg.get("logger") is not None else None
        source = _resume_source(run, resume)
        resumed = load_checkpoint(source) if source is not None else None
        if resumed is not None:
            check_resumable(plain(cfg), resumed, source)
        previous = run.read_summary()
        if resumed is not None and int(resumed["epoch"]) >= settings.epochs and previous \
                and previous.get("status") == "finished" and source == run.last_checkpoint():
            log.info("run %s is already finished (%d epochs)", run.path, settings.epochs)
            if run.writable:
                print_run_table(previous)
            return previous
        job = TrainingJob(cfg, settings, seed, run, resumed, group)
        if resumed is not None:
            _fork_history(source, run, resumed)
            log.info("continuing from %s after epoch %d%s", source, job.epoch,
                     f" (+{job.partial['stats']['steps']} steps)" if job.partial else "")
        purge_from, missing = _cut_logs(run, resumed)
        if run.writable:
            job.nd.pattern.save(run.path / "noise.pt")
        _log_data(job)
        run.write_summary(job.summary(time.perf_counter() - wall_start))
        settled = True  # (set first: a failure reported by another process is raised here)
        group.settle()  # DDP: every process got this far, or all stop now
        job.distribute()
        started = True
        tracker = make_tracker(run.path, first_epoch=purge_from) if make_tracker is not None and run.writable else None
        logger = RunLogger(run.path, settings.epochs, tracker) if run.writable else NullRunLogger()
        with logger:
            if missing:
                logger.log_epoch(job.epoch, dict(resumed["metrics"]))
            job.fit(logger)
            summary = job.finish(logger, time.perf_counter() - wall_start)
    except Preempted:
        raise
    except BaseException as e:
        if not settled:
            group.settle(e)
        if started or fresh:  # never mark an existing run failed for a refused continuation
            run.set_status("failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
        else:  # a refused command in a run's folder: Hydra has just overwritten the run's .hydra record
            _restore_hydra_record(run)
        raise
    finally:
        run.unlock()
    if run.writable:
        print_run_table(summary)
    return summary


def _restore_hydra_record(run: RunFolder) -> None:
    last = run.last_checkpoint()
    try:
        state = load_checkpoint(last) if last is not None else None
    except UserError:  # a damaged last.pt: nothing to restore from
        return
    if state is not None:
        run.restore_hydra_files(state.get("hydra_files"))


def _open_run_folder(group: Distributed, output_dir: Any) -> RunFolder:
    """The run's folder, locked. Under DDP it is rank 0's (each process's Hydra names
    a folder by the time it started, ``${now:...}``, which may differ by a second):
    rank 0 writes it, the others only read it."""
    path = Path(group.from_rank0(str(output_dir)))
    try:
        if group.is_rank0:
            run = RunFolder(prepare_output_dir(path))
            run.lock()
        else:
            _drop_own_folder(Path(output_dir), path)
            run = ReadOnlyRunFolder(path)
    except BaseException as e:
        group.settle(e)
        raise
    group.settle()
    return run


def _drop_own_folder(own: Path, run: Path) -> None:
    """A non-zero rank's Hydra folder that is not the run's holds only Hydra's record
    (and log) of the same command: remove it, so one run leaves one folder."""
    if not own.is_dir() or own.resolve() == run.resolve():
        return
    if all(p.name == ".hydra" or p.suffix == ".log" for p in own.iterdir()):
        shutil.rmtree(own, ignore_errors=True)
        with contextlib.suppress(OSError):
            own.parent.rmdir()  # the date folder, if that was all it held


def _log_data(job: TrainingJob) -> None:
    noise = job.nd.noise_summary()
    log.info("%s: %d train / %d val / %d test samples, %d classes; noise %s rate %.4g -> %.2f%% wrong training labels",
             job.data.name, len(job.nd.train), len(job.nd.val or []), len(job.data.test), job.data.num_classes,
             noise["kind"], noise["rate"], 100 * noise["realised_error"])
