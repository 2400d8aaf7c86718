"""Building a training run: every object the config names (each value checked before
any data is read), the data after noise, the loaders, and the state a checkpoint
restores. :mod:`sat.tasks.train.epochs` runs it; :mod:`sat.tasks.train.results` writes its results.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from sat.config import validate
from sat.config.schema import LoaderSettings, TrainerSettings, read
from sat.data.loader import Loader
from sat.data.prepare import TrainingData, load, prepare
from sat.data.splits import StreamSettings
from sat.data.stream import check_streaming
from sat.errors import UserError
from sat.methods.base import Method
from sat.models import count_parameters
from sat.parallel.batch import WHOLE_BATCH, GlobalBatch, ShardedBatch
from sat.parallel.group import SINGLE, Distributed
from sat.run.checkpoint import CheckpointWriter, rng_state, set_rng_state
from sat.run.folder import RunFolder
from sat.tasks.build import set_normalization
from sat.tasks.context import job_num, packages_used, plain
from sat.tasks.device import resolve_device, resolve_precision
from sat.tasks.train.ddp import (
    DataParallelStep,
    check_batch_split,
    check_last_batch,
    check_sync_batchnorm,
    convert_sync_batchnorm,
    has_batchnorm,
)
from sat.tasks.train.objects import Objects, build_objects, note_cost
from sat.tasks.train.preflight import check_smallest_batch
from sat.tasks.train.warm_start import warm_start

log = logging.getLogger("sat")


@dataclass
class TrainingJob:
    """A run's built parts and its state (what a checkpoint holds)."""

    cfg: DictConfig
    settings: TrainerSettings
    seed: int
    run: RunFolder
    group: Distributed
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    objects: Objects
    data: TrainingData
    loader: Loader
    eval_loaders: dict[str, Loader]
    step_model: nn.Module
    hydra_files: dict[str, str] | None
    writer: CheckpointWriter
    epoch: int = 0
    at_best_val: dict[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    partial: dict[str, Any] | None = None  # mid-epoch stats of a preempted run
    global_batch: GlobalBatch = WHOLE_BATCH  # a DDP run's: see distribute()
    step: DataParallelStep | None = None
    wall_start: float = field(default_factory=time.perf_counter)  # when this process started the run
    wall_before: float = 0.0  # seconds the run trained before it was continued here
    init_from: dict[str, Any] | None = None  # a warm start's record (sat.tasks.train.warm_start)

    @property
    def wall_time_s(self) -> float:
        """The run's wall time: this process's, plus the earlier ones' it continues."""
        return self.wall_before + time.perf_counter() - self.wall_start

    # the parts the loop uses most, by name
    @property
    def model(self) -> nn.Module:
        return self.objects.model

    @property
    def method(self) -> Method:
        return self.objects.method

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.objects.optimizer

    @property
    def scheduler(self) -> Any:
        return self.objects.scheduler

    @property
    def config(self) -> dict[str, Any]:
        return plain(self.cfg)

    @property
    def params(self) -> int:
        return count_parameters(self.model)

    @property
    def train_labels(self) -> torch.Tensor:
        return self.loader.labels

    @cached_property
    def true_labels(self) -> torch.Tensor | None:
        """The training labels before noise, on the device (None where not all are known)."""
        true = self.data.true_train_labels
        return None if true is None else true.to(self.device)

    @cached_property
    def noisy(self) -> torch.Tensor:
        true = self.true_labels
        return self.train_labels != true if true is not None else torch.zeros_like(self.train_labels, dtype=torch.bool)

    # --- state ------------------------------------------------------------------------

    def restore(self, state: dict[str, Any]) -> None:
        for obj, key in [(self.model, "model"), (self.optimizer, "optimizer"), (self.scheduler, "scheduler"),
                         (self.method, "method"), (self.loader, "loader")]:
            obj.load_state_dict(state[key])
        set_rng_state(state["rng"])
        self.epoch, self.at_best_val = int(state["epoch"]), state["at_best_val"]
        self.metrics, self.partial = dict(state.get("metrics") or {}), state.get("partial")
        self.wall_before = float(state.get("wall_time_s") or 0.0)

    def state(self, partial: dict[str, Any] | None = None) -> dict[str, Any]:
        config = self.config
        return {
            "epoch": self.epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "method": self.method.state_dict(),
            "loader": self.loader.state_dict(), "rng": rng_state(), "at_best_val": self.at_best_val,
            "metrics": self.metrics, "partial": partial, "config": config,
            "noise_sha256": self.data.pattern.sha256(), "params": self.params,
            "model_outputs": self.objects.model_outputs, "packages": packages_used(config),
            "hydra_files": self.hydra_files, "loader_kind": self.data.loader_kind, "wall_time_s": self.wall_time_s,
            "init_from": self.init_from,
        }

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


# --- building ---------------------------------------------------------------------------

def setup_torch(settings: TrainerSettings, device_name: Any, seed: int,
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
    # channels_last: on CUDA, and on the CPU under bf16 autocast, whose oneDNN convolutions are fastest in NHWC
    # (benchmarks/cpu_throughput.py); CPU runs in fp32 keep NCHW, so their results stay what they were
    channels_last = settings.channels_last and (device.type == "cuda" or amp_dtype is not None)
    return device, amp_dtype, channels_last


def _place(objects: Objects, data: TrainingData, device: torch.device, channels_last: bool) -> None:
    """The networks on the device, normalising with the data's statistics; the method's
    per-sample state allocated for the training labels."""
    method = objects.method
    set_normalization([*objects.model.modules(), *method.modules()], data.data.mean, data.data.std)
    objects.model.to(device)
    if channels_last:
        objects.model.to(memory_format=torch.channels_last)
    with validate.config_node("method"):  # its refusals name method.<argument>
        method.setup(data.train.labels.to(device), data.num_classes)
    method.to(device)
    if channels_last:
        method.to(memory_format=torch.channels_last)


def make_loaders(data: TrainingData, settings: TrainerSettings, augment: Any, seed: int, device: torch.device,
                 group: Distributed) -> tuple[Loader, dict[str, Loader]]:
    """The training loader (shuffled, augmented) and the evaluation loaders (in order,
    the split's one view), each sharded over the processes of a DDP run."""
    where = dict(device=device, rank=group.rank, world_size=group.world_size)
    train = data.train.loader(settings.batch_size, shuffle=True, augment=augment, seed=seed, **where)
    evaluation = {name: split.loader(settings.eval_batch_size, **where)
                  for name, split in (("val", data.val), ("test", data.test)) if split is not None and len(split)}
    return train, evaluation


def build_job(cfg: DictConfig, settings: TrainerSettings, seed: int, run: RunFolder,
              resumed: dict[str, Any] | None, group: Distributed = SINGLE) -> TrainingJob:
    """The run ``cfg`` describes, continued from ``resumed`` (a checkpoint's state) if given."""
    check_batch_split(settings.batch_size, group.world_size)
    device, amp_dtype, channels_last = setup_torch(settings, read(cfg, "device"), seed, group.device)
    objects = build_objects(cfg, settings, device)
    loader = LoaderSettings.from_config(cfg.get("loader") or {})
    streaming = StreamSettings(loader.num_workers, loader.decode, loader.persistent_workers, loader.prefetch_factor)
    with validate.config_node("loader"):  # what cannot run here (decode=cuda), before any data is read
        check_streaming(streaming, device)
    with validate.config_node("dataset"):  # the dataset's refusals name dataset.<argument>
        splits = load(objects.source)
    data = prepare(splits, objects.noise, device, loader_kind=loader.kind, streaming=streaming)
    if resumed is not None and resumed["noise_sha256"] != data.pattern.sha256():
        raise UserError(f"resume: the noise drawn now differs from the checkpoint's (hash "
                        f"{resumed['noise_sha256'][:12]}); use noise.from_file=<the run's noise.pt>")
    _place(objects, data, device, channels_last)
    loader, eval_loaders = make_loaders(data, settings, objects.augment, seed, device, group)
    check_smallest_batch([("the model", objects.model), *(("the method's heads", net) for net in objects.method.networks())],
                         len(data.train), settings.batch_size, group.world_size)
    if group.enabled:
        check_last_batch(len(data.train), settings.batch_size, group.world_size)
        if settings.sync_batchnorm:
            check_sync_batchnorm(device)
    step_model = torch.compile(objects.model, mode=settings.compile_mode) if settings.compile else objects.model
    # the run's .hydra record as it was first written, kept with every checkpoint
    hydra_files = resumed.get("hydra_files") if resumed is not None else run.hydra_files()
    note_cost(objects.model, data, device, settings)
    job = TrainingJob(cfg, settings, seed, run, group, device, amp_dtype, channels_last, objects, data, loader,
                      eval_loaders, step_model, hydra_files, CheckpointWriter(background=settings.async_checkpoint))
    if resumed is not None:
        job.restore(resumed)
        job.init_from = resumed.get("init_from")
    elif cfg.get("init_from"):  # a new run from another run's weights only
        job.init_from = warm_start(objects.model, cfg.init_from,
                                   validate.flag("init_from_strict", cfg.get("init_from_strict", True)))
    return job
