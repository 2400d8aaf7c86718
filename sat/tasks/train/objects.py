"""Every object a training config names, built (and every value checked) before any
data is read: the data source, noise, method, augmentation, model, optimizer and
schedule, within the memory budget."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from sat.config import validate
from sat.config.build import USER_CONFIG
from sat.config.schema import TrainerSettings
from sat.config.value_checks import check_node
from sat.data.datasets import DataSource
from sat.data.noise import Noise
from sat.data.prepare import TrainingData
from sat.errors import UserError
from sat.methods.base import Method
from sat.tasks.budget import check_memory, method_memory
from sat.tasks.build import build_model
from sat.tasks.context import choices, plain
from sat.tasks.device import resolve_precision

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
    memory: tuple[int, int] | None = None  # (bytes the run needs at least, bytes the device has): check_memory's count


CPU_HEAVY_TFLOP = 5.0  # training compute per epoch above which a CPU run gets a cost note (cifar10_cpu: 2)


def note_cost(model: nn.Module, data: TrainingData, device: torch.device, settings: TrainerSettings) -> None:
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
                    "images (x %d epochs); for a CPU-sized run see experiment=cifar10_cpu (CIFAR-10) or image_folder_cpu (32 px)",
                    type(model[-1] if isinstance(model, nn.Sequential) else model).__name__, h, w,
                    counter.get_total_flops() / 1e9, per_epoch, len(data.train), settings.epochs)


CPU_PRESETS = {"image_folder": "experiment=image_folder_cpu"}  # dataset option -> its preset for a CPU


def device_preset(cfg: DictConfig, device: torch.device) -> str | None:
    """The command made for this device, where the run is not one already: on a CPU, an
    image folder's preset (32 px, a small CNN) instead of the defaults' ResNet-34 at 224 px."""
    picked = choices()
    preset = CPU_PRESETS.get(picked.get("dataset", "")) if device.type == "cpu" else None
    if preset is None or f"experiment={picked.get('experiment')}" == preset:
        return None
    root = OmegaConf.select(cfg, "dataset.root", default=None)
    return f"on a CPU, the preset made for it: python train.py {preset}" + (f" dataset.root={root}" if root else "")


def _fused(node: Any, device: torch.device) -> dict[str, Any]:
    """On CUDA, PyTorch's fused SGD/Adam/AdamW step (one kernel for all parameters: about
    15% more images/s for ResNet-34 on an H100) unless the config chooses itself."""
    fusable = ("torch.optim.SGD", "torch.optim.Adam", "torch.optim.AdamW")
    if device.type != "cuda" or node.get("_target_") not in fusable or "fused" in node or "foreach" in node:
        return {}
    return {"fused": True}


_STEPPED: set[str] = set()  # the (optimizer, scheduler, epochs) already stepped through here without error


def dry_run(make_optimizer: Any, make_scheduler: Any, epochs: int, key: str | None = None) -> None:
    """Build the optimizer and scheduler again on one throwaway parameter and step them
    through every epoch, so a value that acts late (``scheduler.gamma=abc`` at the first
    milestone) fails now, not after hours of training. ``key`` (the configs and epochs)
    skips a schedule this process has stepped through already (the jobs of a sweep's
    ``dry_run=true`` share a few)."""
    if key is not None and key in _STEPPED:
        return
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
    if key is not None:
        _STEPPED.add(key)


def check_unlabeled(source: DataSource, method: Method, noise: Noise) -> None:
    """A source that adds images without labels (STL-10's ``unlabeled=true``): only a
    method that reads no training label trains on them, and no label noise is drawn over them."""
    key = f"dataset.{source.unlabeled_by}"
    if not method.takes_unlabeled:
        raise UserError(f"{key}=true adds {source.name} images without labels, which only self-supervised methods "
                        f"train on (method={type(method).__name__} reads every image's label); accepted: {key}=false, "
                        "or a self-supervised method (method=ssl_sat, byol, simsiam, simclr)")
    if noise.rate > 0:
        raise UserError(f"noise.rate={noise.rate:g} corrupts labels, but {key}=true adds {source.name} images that have "
                        f"none; accepted: noise.rate=0, or {key}=false")


NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm,
               nn.LocalResponseNorm)  # torchvision's reference scripts' list (utils.set_weight_decay)


def parameter_groups(model: nn.Module, method: Method, norm_weight_decay: float | None = None,
                     bias_weight_decay: float | None = None) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: first every parameter of the model and the
    method's networks with the optimizer's settings, then the method's own groups
    (:meth:`Method.parameter_groups`: the SSL probe's lr and weight decay), then, where
    set, biases (``bias_weight_decay``) and normalisation layers' parameters
    (``norm_weight_decay``) in groups of their own, as torchvision's ``set_weight_decay``
    (a bias of a norm layer counts as a bias). Without any of these: one group, as before."""
    own = [dict(group, params=list(group["params"])) for group in method.parameter_groups(model)]
    taken: set[int] = set()
    for group in own:
        for p in group["params"]:
            if id(p) in taken:
                raise ValueError(f"a parameter is in two of {type(method).__name__}'s parameter groups")
            taken.add(id(p))
    norm = {id(p) for module in [*model.modules(), *method.modules()] if isinstance(module, NORM_LAYERS)
            for p in module.parameters(recurse=False)}
    rest, biases, norms = [], [], []
    for name, p in [*model.named_parameters(), *method.named_parameters()]:
        if id(p) in taken:
            continue
        taken.add(id(p))  # (a network the method shares with the model counts once)
        if bias_weight_decay is not None and name.rsplit(".", 1)[-1] == "bias":
            biases.append(p)
        elif norm_weight_decay is not None and id(p) in norm:
            norms.append(p)
        else:
            rest.append(p)
    groups = [{"params": rest}, *own]
    groups += [{"params": biases, "weight_decay": bias_weight_decay, "name": "bias"}] if biases else []
    groups += [{"params": norms, "weight_decay": norm_weight_decay, "name": "norm"}] if norms else []
    return groups


def build_objects(cfg: DictConfig, settings: TrainerSettings, device: torch.device, meta: bool = False) -> Objects:
    """Every object the config names, so every value is checked before data is read.
    ``meta``: the networks (and the optimizer over them) on the meta device, nothing
    allocated (``dry_run=true``)."""
    for group in ("dataset", "noise", "method", "model", "optimizer", "scheduler"):
        check_node(cfg.get(group), group)  # each value against its constructor's annotations
    source = USER_CONFIG.build(cfg.dataset, "dataset", "dataset")
    noise = USER_CONFIG.build(cfg.noise, "noise", "noise")
    method = USER_CONFIG.build(cfg.method, "method", "method")
    with validate.config_node("method"):  # its refusals name method.<argument>
        moved = method.plan(settings.epochs, settings.phases_by)
    for key, (start, now) in moved.items():
        log.info("trainer.phases_by=%d: method.%s %d -> %d (every later phase of the method within the run)",
                 settings.phases_by, key, start, now)
    if source.unlabeled_by:
        check_unlabeled(source, method, noise)
    augment = USER_CONFIG.build(cfg.augment, "augment") if cfg.get("augment") is not None else None
    outputs = source.num_classes + method.extra_outputs

    def new_model() -> nn.Module:
        return build_model(cfg.model, outputs, source.input_shape)

    # the method's heads always count (method.projector_hidden_dim=1e8); its per-sample state
    # where the number of samples is known before reading
    samples = getattr(source, "num_train", None)
    with validate.config_node("method"):  # its set-up's refusals name method.<argument>
        heads = method_memory(lambda: USER_CONFIG.build(cfg.method, "method", "method"), new_model, samples or 0,
                              source.num_classes)
    memory = check_memory("train", device=device, build_model=new_model, input_shape=source.input_shape,
                          batch_size=settings.batch_size, source=source, method=heads,
                          half_precision=resolve_precision(settings.precision, device) is not None,
                          preset=device_preset(cfg, device), model_key=repr((plain(cfg.model), outputs)))
    with torch.device("meta") if meta else contextlib.nullcontext():
        model = new_model()
        # A method with a network of its own (co-teaching's peer) gets the same
        # architecture; the optimizer then trains both.
        method.attach_model(new_model)
    for key in ("lr", "momentum", "weight_decay"):
        if key in cfg.optimizer:
            validate.number(f"optimizer.{key}", cfg.optimizer[key], lo=0.0)
    try:
        make_optimizer, make_scheduler = USER_CONFIG.build(cfg.optimizer, "optimizer"), \
            USER_CONFIG.build(cfg.scheduler, "scheduler")
        dry_run(make_optimizer, make_scheduler, settings.epochs,
                key=repr((plain(cfg.optimizer), plain(cfg.scheduler), settings.epochs)))
        groups = parameter_groups(model, method, settings.norm_weight_decay, settings.bias_weight_decay)
        optimizer = make_optimizer(groups, **({} if meta else _fused(cfg.optimizer, device)))
        scheduler = make_scheduler(optimizer)
    except (ValueError, TypeError) as e:
        raise UserError(f"optimizer/scheduler: {str(e).splitlines()[0]}") from None
    return Objects(source, noise, method, augment, model, optimizer, scheduler, outputs, memory)
