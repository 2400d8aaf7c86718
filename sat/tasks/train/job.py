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
from sat.run.budget import check_fits, check_source_size
from sat.run.checkpoint import CheckpointWriter, rng_state, set_rng_state
from sat.data.datasets import DataSource
from sat.data.loader import Loader
from sat.data.noise import Noise
from sat.data.prepare import TrainingData, load, prepare
from sat.errors import UserError
from sat.methods.base import Method
from sat.models import count_parameters
from sat.parallel.batch import WHOLE_BATCH, GlobalBatch, ShardedBatch
from sat.parallel.group import SINGLE, Distributed
from sat.tasks.train.ddp import (DataParallelStep, check_batch_split, check_last_batch, check_sync_batchnorm,
                               convert_sync_batchnorm, has_batchnorm)
from sat.run.folder import RunFolder
from sat.tasks.train.warm_start import warm_start
from sat.tasks.common import build, build_model, job_num, packages_used, plain, resolve_device, resolve_precision, \
    set_normalization
from sat.config.schema import TrainerSettings, read
from sat.config.value_checks import check_node

log = logging.getLogger("sat")


@dataclass
class Objects:
    """What the config names, built (every value checked) before any data is read."""

    source: DataSource
    noise: Noise
    method: Method
    augment: Any
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    model_outputs: int


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

CPU_HEAVY_TFLOP = 1.0  # training compute per epoch above which a CPU run gets a cost note


def _note_cost(model: nn.Module, data: TrainingData, device: torch.device, settings: TrainerSettings) -> None:
    """One line at start where a run is obviously heavy for its device (a CPU): the
    model's compute per image (counted on one image), per epoch, and a smaller preset."""
    if device.type != "cpu":
        return
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, *data.train.sample_shape, device=device))
    model.train(was_training)
    per_epoch = 3 * counter.get_total_flops() * len(data.train) / 1e12  # forward + backward ~ 3x forward
    if per_epoch > CPU_HEAVY_TFLOP:
        c, h, w = data.train.sample_shape
        log.warning("heavy for a CPU: %s at %dx%d px is %.2f GFLOP per image, %.1f TFLOP per training epoch of %d "
                    "images (x %d epochs); for a CPU-sized run see experiment=image_folder_cpu (32 px, a small CNN)",
                    type(model[-1] if isinstance(model, nn.Sequential) else model).__name__, h, w, counter.get_total_flops() / 1e9, per_epoch,
                    len(data.train), settings.epochs)


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
    return device, amp_dtype, device.type == "cuda" and settings.channels_last


def _fused(node: Any, device: torch.device) -> dict[str, Any]:
    """On CUDA, PyTorch's fused SGD/Adam/AdamW step (one kernel for all parameters: about
    15% more images/s for ResNet-34 on an H100) unless the config chooses itself."""
    fusable = ("torch.optim.SGD", "torch.optim.Adam", "torch.optim.AdamW")
    if device.type != "cuda" or node.get("_target_") not in fusable or "fused" in node or "foreach" in node:
        return {}
    return {"fused": True}


def _check_model_fits(cfg: DictConfig, outputs: int, input_shape: tuple[int, ...], device: torch.device) -> None:
    """A model too large for the device is refused with its parameter count before any
    memory is allocated (counted on the meta device)."""
    try:
        with torch.device("meta"):
            params = count_parameters(build_model(cfg.model, outputs, input_shape))
    except UserError:
        raise
    except Exception:  # a model that cannot be built on the meta device: its real build reports any error
        return
    check_fits(f"model with {params:,} parameters", 16 * params, device,  # weights, gradients, 2 optimizer buffers
               "a smaller model (model.width, model.depth)")


def dry_run(make_optimizer: Any, make_scheduler: Any, epochs: int) -> None:
    """Build the optimizer and scheduler again on one throwaway parameter and step them
    through every epoch, so a value that acts late (``scheduler.gamma=abc`` at the first
    milestone) fails now, not after hours of training."""
    param = torch.zeros(1, requires_grad=True)
    optimizer = make_optimizer([param])
    scheduler = make_scheduler(optimizer)
    for epoch in range(epochs):
        param.grad = torch.zeros_like(param)
        try:
            optimizer.step()
            scheduler.step()
        except (ValueError, TypeError, ZeroDivisionError) as e:
            raise UserError(f"optimizer/scheduler: {str(e).splitlines()[0]} (at epoch {epoch + 1} of a dry run "
                            f"before training)") from None


def build_objects(cfg: DictConfig, settings: TrainerSettings, device: torch.device) -> Objects:
    """Every object the config names, so every value is checked before data is read."""
    for group in ("dataset", "noise", "method", "model", "optimizer", "scheduler"):
        check_node(cfg.get(group), group)  # each value against its constructor's annotations
    source = build(cfg.dataset, "dataset", DataSource)
    check_source_size(source, device)
    noise = build(cfg.noise, "noise", Noise)
    method = build(cfg.method, "method", Method)
    with validate.argument("method", method):  # its refusals name method.<argument>
        method.schedule(settings.epochs)
    augment = build(cfg.augment, "augment", object) if cfg.get("augment") is not None else None
    outputs = source.num_classes + method.extra_outputs
    _check_model_fits(cfg, outputs, source.input_shape, device)
    model = build_model(cfg.model, outputs, source.input_shape)
    # A method with a network of its own (co-teaching's peer) gets the same
    # architecture; the optimizer then trains both.
    method.attach_model(lambda: build_model(cfg.model, outputs, source.input_shape))
    for key in ("lr", "momentum", "weight_decay"):
        if key in cfg.optimizer:
            validate.number(f"optimizer.{key}", cfg.optimizer[key], lo=0.0)
    try:
        make_optimizer, make_scheduler = build(cfg.optimizer, "optimizer", object), build(cfg.scheduler, "scheduler", object)
        dry_run(make_optimizer, make_scheduler, settings.epochs)
        params = list(model.parameters()) + list(method.parameters())
        optimizer = make_optimizer(params, **_fused(cfg.optimizer, device))
        scheduler = make_scheduler(optimizer)
    except (ValueError, TypeError) as e:
        raise UserError(f"optimizer/scheduler: {str(e).splitlines()[0]}") from None
    return Objects(source, noise, method, augment, model, optimizer, scheduler, outputs)


def _place(objects: Objects, data: TrainingData, device: torch.device, channels_last: bool) -> None:
    """The networks on the device, normalising with the data's statistics; the method's
    per-sample state allocated for the training labels."""
    method = objects.method
    set_normalization([*objects.model.modules(), *method.modules()], data.data)
    objects.model.to(device)
    if channels_last:
        objects.model.to(memory_format=torch.channels_last)
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
    data = prepare(load(objects.source), objects.noise, device)
    if resumed is not None and resumed["noise_sha256"] != data.pattern.sha256():
        raise UserError(f"resume: the noise drawn now differs from the checkpoint's (hash "
                        f"{resumed['noise_sha256'][:12]}); use noise.from_file=<the run's noise.pt>")
    _place(objects, data, device, channels_last)
    loader, eval_loaders = make_loaders(data, settings, objects.augment, seed, device, group)
    if group.enabled:
        check_last_batch(len(data.train), settings.batch_size, group.world_size)
        if settings.sync_batchnorm:
            check_sync_batchnorm(device)
    step_model = torch.compile(objects.model, mode=settings.compile_mode) if settings.compile else objects.model
    # the run's .hydra record as it was first written, kept with every checkpoint
    hydra_files = resumed.get("hydra_files") if resumed is not None else run.hydra_files()
    _note_cost(objects.model, data, device, settings)
    job = TrainingJob(cfg, settings, seed, run, group, device, amp_dtype, channels_last, objects, data, loader,
                      eval_loaders, step_model, hydra_files, CheckpointWriter(background=settings.async_checkpoint))
    if resumed is not None:
        job.restore(resumed)
        job.init_from = resumed.get("init_from")
    elif cfg.get("init_from"):  # a new run from another run's weights only
        job.init_from = warm_start(objects.model, cfg.init_from,
                                   validate.flag("init_from_strict", cfg.get("init_from_strict", True)))
    return job
