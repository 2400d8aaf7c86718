"""What the tasks share: devices and precision, the Hydra run context, and building
the objects a config names.

``sat.tasks`` is the composition root: the only package that reads Hydra configs. It
builds the objects the config names and hands plain values to the library.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from sat.data.datasets import DatasetSplits
from sat.errors import UserError
from sat.config import keys
from sat.models import Normalize, with_normalization

# --- devices ------------------------------------------------------------------------


def resolve_device(name: Any, job: int | None = None) -> torch.device:
    """``auto`` is CUDA when present; in a sweep on a machine with several GPUs, job
    ``n`` gets GPU ``n % count`` (Hydra's launchers assign no GPUs themselves)."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", (job or 0) % torch.cuda.device_count())
    try:
        device = torch.device(str(name))
    except (RuntimeError, ValueError):
        raise UserError(f"device={name!r} is not a device; accepted: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name!r} but CUDA is not available here; accepted: auto, cpu")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device={name!r} is not supported; accepted: auto, cpu, cuda, cuda:N")
    return device


def resolve_precision(precision: str, device: torch.device, key: str = "trainer.precision") -> torch.dtype | None:
    """The autocast dtype: bf16 on CUDA under ``auto``, none (fp32) on the CPU."""
    choices = {"auto": torch.bfloat16 if device.type == "cuda" else None, "bf16": torch.bfloat16, "fp32": None}
    if precision not in choices:
        raise UserError(f"{key}={precision!r} is not supported; accepted: {', '.join(choices)}")
    return choices[precision]


# --- the Hydra run context -------------------------------------------------------------


def plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def job_num() -> int | None:
    """This job's number within a multirun sweep (None outside one)."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return hc.job.num if str(hc.mode) == "RunMode.MULTIRUN" else None


def choices() -> dict[str, str]:
    """The group options Hydra picked (``method: sat``), when running under Hydra."""
    if not HydraConfig.initialized():
        return {}
    return {k: str(v) for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra")}


def packages_used(config: dict[str, Any]) -> list[str]:
    """The top-level packages of every ``_target_`` a config names (recorded with a run,
    so ``trusted_packages=`` can be given when its checkpoints are read back)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("_target_"), str):
                found.add(node["_target_"].split(".", 1)[0])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk({k: v for k, v in config.items() if k != "hydra"})
    return sorted(found)


# --- objects from the user's own config (trusted: any importable target) -----------------


def build(node: Any, what: str, expected: type | tuple[type, ...], **kwargs: Any) -> Any:
    """``instantiate(node, **kwargs)``, which must give an ``expected`` object; a
    UserError from a constructor comes out as itself, other failures as one line."""
    try:
        obj = instantiate(node, **kwargs)
    except InstantiationException as e:  # a constructor's refusal, named by the node's path (method.natural.alpha)
        raise keys.instantiation_error(e, what) from None
    if not isinstance(obj, expected):
        names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        raise UserError(f"{what}._target_={target!r} built a {type(obj).__name__}; accepted: a {names}")
    return obj


def build_model(model_cfg: Any, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """The network a model node names behind its input normalisation, whose statistics
    are filled in once the data is loaded (:func:`set_normalization`): so the model, and
    the optimizer over its parameters, exist (and are checked) before any data is read."""
    net = build(model_cfg, "model", nn.Module, num_classes=num_classes, input_shape=tuple(input_shape))
    channels = int(input_shape[0])
    return with_normalization(net, [0.0] * channels, [1.0] * channels)


def set_normalization(modules: Iterable[nn.Module], data: DatasetSplits) -> None:
    """Give every input normalisation among ``modules`` the data's mean and std."""
    for module in modules:
        if isinstance(module, Normalize):
            module.set_stats(data.mean, data.std)
