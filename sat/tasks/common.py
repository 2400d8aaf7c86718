"""What the tasks share: devices, model and data construction from config nodes,
restoring a run from its checkpoint, and the entry-point wrapper.

``sat.tasks`` is the composition root: the only package that reads Hydra configs. It
builds the objects the config names and hands plain values to the library.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from sat.checkpoint import load_checkpoint
from sat.data.datasets import DatasetSplits, ImageSet
from sat.data.noise import NoisePattern
from sat.errors import UserError
from sat.models import with_normalization

log = logging.getLogger("sat")

def _sweep_subdir(override_dirname: str, seed: Any) -> str:
    """Sweep sub-folder: the job's overrides (seed excluded) then the seed, so
    seeds of the same setting sit side by side."""
    return f"{override_dirname},seed={seed}" if override_dirname else f"seed={seed}"


OmegaConf.register_new_resolver("sat_subdir", _sweep_subdir, replace=True)


# --- small pieces -------------------------------------------------------------------


def resolve_device(name: str, job: int | None = None) -> torch.device:
    """``auto`` is CUDA when present; in a sweep on a machine with several GPUs, job
    ``n`` gets GPU ``n % count`` (Hydra's launchers assign no GPUs themselves)."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", (job or 0) % torch.cuda.device_count())
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"device={name!r} is not a device; accepted: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name!r} but CUDA is not available here; accepted: auto, cpu")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device={name!r} is not supported; accepted: auto, cpu, cuda, cuda:N")
    return device


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 on CUDA under ``auto``, none (fp32) on the CPU."""
    choices = {"auto": torch.bfloat16 if device.type == "cuda" else None, "bf16": torch.bfloat16, "fp32": None}
    if precision not in choices:
        raise UserError(f"trainer.precision={precision!r} is not supported; accepted: {', '.join(choices)}")
    return choices[precision]


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


def build_model(model_cfg: Any, num_classes: int, input_shape: tuple[int, ...], mean, std) -> nn.Module:
    """Instantiate a model node (only ``sat.`` targets: a stored config must not name
    arbitrary code) and put the input normalisation inside it."""
    target = str(model_cfg.get("_target_", ""))
    if not target.startswith("sat."):
        raise UserError(f"model._target_={target!r} is not allowed; accepted: a class inside the sat package (sat.models.*)")
    net = instantiate(model_cfg, num_classes=num_classes, input_shape=tuple(input_shape))
    return with_normalization(net, mean, std)


@dataclass
class NoisyData:
    """A dataset after noise and the validation split, as tensors on the CPU."""

    data: DatasetSplits
    pattern: NoisePattern
    train: ImageSet  # what the model trains on (given labels)
    val: ImageSet
    true_train_labels: torch.Tensor  # labels before noise, aligned with ``train``

    @property
    def realised_error(self) -> float:
        return self.pattern.realised_error(self.data.train.labels)


def load_noisy_data(dataset_cfg: Any, noise_cfg: Any, pattern: NoisePattern | None = None) -> NoisyData:
    """Load the dataset and apply the noise (drawn from its seeded config, or a given
    pattern) to the whole training set, then hold out the validation tail: the
    validation labels are as noisy as the training labels, as they would be in practice."""
    data: DatasetSplits = instantiate(dataset_cfg)
    if pattern is None:
        pattern = instantiate(noise_cfg).draw(
            data.train.images, data.train.labels, data.num_classes,
            class_map=torch.tensor(data.asymmetric_map), mean=data.mean, std=data.std,
        )
    images, labels = pattern.apply(data.train.images, data.train.labels)
    train, val = ImageSet(images, labels).split(data.val_size)
    return NoisyData(data, pattern, train, val, data.train.labels[: len(train)])


# --- entry-point wrapper --------------------------------------------------------------


def _user_error_in(e: BaseException | None) -> UserError | None:
    """The UserError behind ``e``, if any (Hydra's instantiate wraps what a
    constructor raises)."""
    while e is not None and not isinstance(e, UserError):
        e = e.__cause__
    return e


def run_task(task: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> dict[str, Any]:
    """Run a task for an entry point: bad input ends with its one-line message (exit
    status 2), any other failure is logged with its traceback, and the run's output
    folder is always named, so a failed job of a sweep can still be found."""
    out = cfg.paths.output_dir
    try:
        return task(cfg)
    except Exception as e:
        user_error = _user_error_in(e)
        if user_error is None:
            log.exception("run failed; run folder: %s", out)
            raise
        log.error("%s", user_error)
        print(f"error: {user_error}\n(run folder: {out})", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except BaseException:
        log.exception("run failed; run folder: %s", out)
        raise


def restore_run(
    checkpoint: str, device: torch.device, dataset_root: str | None = None, data_cache: dict | None = None
):
    """Rebuild a run's data (with its exact noise) and model from a checkpoint.

    Returns ``(state, run_config, noisy_data, model)``; the model is in eval mode on
    ``device``. The noise comes from the run's ``noise.pt`` when it is still next to
    the checkpoint, else it is redrawn from the stored (seeded) config; either way its
    hash must match the one the checkpoint recorded. ``data_cache`` (a dict the caller
    keeps) reuses the data across checkpoints of one run instead of reloading it.
    """
    state = load_checkpoint(checkpoint)
    run_cfg = OmegaConf.create(state["config"])
    if dataset_root is not None:
        if "root" not in run_cfg.dataset:
            raise UserError(f"dataset_root={dataset_root!r} given, but dataset {run_cfg.dataset._target_} reads no files")
        run_cfg.dataset.root = dataset_root
    noise_file = Path(checkpoint).expanduser().resolve().parent.parent / "noise.pt"
    key = (repr(plain(run_cfg.dataset)), state["noise_sha256"])
    nd = (data_cache or {}).get(key)
    if nd is None:
        pattern = NoisePattern.load(noise_file) if noise_file.is_file() else None
        nd = load_noisy_data(run_cfg.dataset, run_cfg.noise, pattern)
        if data_cache is not None:
            data_cache[key] = nd
    if nd.pattern.sha256() != state["noise_sha256"]:
        raise UserError(f"checkpoint={checkpoint!r}: its noise pattern (hash {state['noise_sha256'][:12]}) could not be "
                        f"reproduced; put the run's noise.pt at {noise_file}")
    data = nd.data
    model = build_model(run_cfg.model, data.num_classes, data.input_shape, data.mean, data.std)
    model.load_state_dict(state["model"])
    return state, run_cfg, nd, model.to(device).eval()


