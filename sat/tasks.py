"""The tasks behind the entry points: ``train`` and ``evaluate``.

This is the composition root: the only module that reads Hydra configs. It builds the
objects the config names and hands plain values to the library.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from sat.checkpoint import atomic_torch_save, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from sat.data.datasets import DatasetSplits, ImageSet
from sat.data.loader import DeviceLoader
from sat.data.noise import NoisePattern
from sat.engine import accuracy_and_loss, evaluate as evaluate_model, predict, train_one_epoch
from sat.errors import UserError
from sat.loggers import RunLogger, flatten
from sat.models import count_parameters, with_normalization

log = logging.getLogger("sat")

# Config groups whose values define what a checkpoint's state means; resuming with
# different ones would silently train something else.
RUN_IDENTITY_KEYS = ("dataset", "model", "noise", "method", "augment")


def _sweep_subdir(override_dirname: str, seed: Any) -> str:
    """Sweep sub-folder: the job's overrides (seed excluded) then the seed, so
    seeds of the same setting sit side by side."""
    return f"{override_dirname},seed={seed}" if override_dirname else f"seed={seed}"


OmegaConf.register_new_resolver("sat_subdir", _sweep_subdir, replace=True)


# --- small pieces -------------------------------------------------------------------


def resolve_device(name: str, job_num: int | None = None) -> torch.device:
    """``auto`` is CUDA when present; in a sweep on a machine with several GPUs, job
    ``n`` gets GPU ``n % count`` (Hydra's launchers assign no GPUs themselves)."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", (job_num or 0) % torch.cuda.device_count())
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


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _job_num() -> int | None:
    """This job's number within a multirun sweep (None outside one)."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return hc.job.num if str(hc.mode) == "RunMode.MULTIRUN" else None


def _choices() -> dict[str, str]:
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


def _check_resumable(cfg: DictConfig, stored: dict) -> None:
    now = {k: _plain(cfg.get(k)) for k in RUN_IDENTITY_KEYS}
    if isinstance(now.get("dataset"), dict):  # where the files lie may change
        now["dataset"].pop("root", None)
        stored = {**stored, "dataset": {k: v for k, v in (stored.get("dataset") or {}).items() if k != "root"}}
    differ = sorted(k for k in RUN_IDENTITY_KEYS if now.get(k) != stored.get(k))
    if differ:
        raise UserError(
            f"resume: the checkpoint was trained with other {', '.join(differ)} settings; rerun with the run's own config: "
            f"python train.py --config-dir RUN/.hydra --config-name config resume=CHECKPOINT"
        )


# --- train ----------------------------------------------------------------------------


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train one model as ``cfg`` describes; returns the run's summary."""
    wall_start = time.perf_counter()
    out = Path(cfg.paths.output_dir)
    device = resolve_device(cfg.device, _job_num())
    amp_dtype = resolve_precision(cfg.trainer.precision, device)
    if cfg.trainer.num_threads:  # parallel CPU jobs of a sweep must share the cores
        torch.set_num_threads(cfg.trainer.num_threads)
    channels_last = device.type == "cuda" and cfg.trainer.channels_last
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    resumed = load_checkpoint(cfg.resume) if cfg.resume else None
    if resumed is not None:
        _check_resumable(cfg, resumed["config"])

    nd = load_noisy_data(cfg.dataset, cfg.noise)
    data, pattern = nd.data, nd.pattern
    if resumed is not None and resumed["noise_sha256"] != pattern.sha256():
        raise UserError(f"resume: the noise drawn now differs from the checkpoint's (hash {resumed['noise_sha256'][:12]}); "
                        "use noise.from_file=<the run's noise.pt>")
    pattern.save(out / "noise.pt")
    log.info("%s: %d train / %d val / %d test samples, %d classes; noise %s rate %.4g -> %.2f%% wrong labels",
             data.name, len(nd.train), len(nd.val), len(data.test), data.num_classes, pattern.kind, pattern.rate,
             100 * nd.realised_error)

    model = build_model(cfg.model, data.num_classes, data.input_shape, data.mean, data.std).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_images, train_labels = nd.train.images.to(device), nd.train.labels.to(device)
    true_labels = nd.true_train_labels.to(device)
    method = instantiate(cfg.method)
    method.setup(train_labels, data.num_classes)
    method.to(device)
    optimizer = instantiate(cfg.optimizer)(model.parameters())  # a partial: params known only now
    scheduler = instantiate(cfg.scheduler)(optimizer)
    loader = DeviceLoader(train_images, train_labels, cfg.trainer.batch_size, shuffle=True,
                          augment=instantiate(cfg.augment), seed=cfg.seed)
    step_model = torch.compile(model) if cfg.trainer.compile else model
    eval_sets = {"val": (nd.val.images.to(device), nd.val.labels.to(device)),
                 "test": (data.test.images.to(device), data.test.labels.to(device))}

    start_epoch, best = 0, None
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        method.load_state_dict(resumed["method"])
        loader.load_state_dict(resumed["loader"])
        set_rng_state(resumed["rng"])
        start_epoch, best = resumed["epoch"], resumed["best"]
        log.info("resumed from %s after epoch %d", cfg.resume, start_epoch)

    params = count_parameters(model)
    config = _plain(cfg)
    ckpt_dir = out / "checkpoints"
    epochs = cfg.trainer.epochs
    logger = RunLogger(out, epochs)
    metrics: dict[str, float] = {}
    try:
        for epoch in range(start_epoch, epochs):  # ``epoch`` = epochs completed before this one
            tic = time.perf_counter()
            metrics = {"lr": optimizer.param_groups[0]["lr"]}
            metrics.update(train_one_epoch(step_model, method, loader, optimizer, epoch, true_labels, amp_dtype, channels_last))
            scheduler.step()
            for split, (images, labels) in eval_sets.items():
                for k, v in evaluate_model(model, images, labels, cfg.trainer.eval_batch_size, amp_dtype, channels_last).items():
                    metrics[f"{split}/{k}"] = v
            for split in ("train", "val", "test"):  # error curves are what double-descent plots show
                if f"{split}/acc" in metrics:
                    metrics[f"{split}/error"] = 1.0 - metrics[f"{split}/acc"]
            soft = method.soft_labels()
            noisy = train_labels != true_labels
            if soft is not None and bool(noisy.any()):
                metrics["sat/label_recovery"] = (soft[noisy].argmax(1) == true_labels[noisy]).float().mean().item()
            metrics["time/epoch_s"] = time.perf_counter() - tic
            done = epoch + 1
            logger.log_epoch(done, metrics)

            if "val/acc" in metrics and (best is None or metrics["val/acc"] > best["val/acc"]):
                best = {"epoch": done, "val/acc": metrics["val/acc"], "test/acc": metrics["test/acc"]}
                is_best = True
            else:
                is_best = False
            state = {
                "epoch": done, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "method": method.state_dict(), "loader": loader.state_dict(),
                "rng": rng_state(), "best": best, "metrics": metrics, "config": config,
                "noise_sha256": pattern.sha256(), "params": params,
            }
            save_checkpoint(state, ckpt_dir / "last.pt")
            if is_best:
                save_checkpoint(state, ckpt_dir / "best.pt")
            every, first = cfg.trainer.checkpoint_every, cfg.trainer.checkpoint_from
            if every > 0 and done >= first and (done - first) % every == 0:
                save_checkpoint(state, ckpt_dir / f"epoch_{done}.pt")

        summary = {
            "name": cfg.name, "output_dir": str(out), "epochs": epochs, "params": params,
            "wall_time_s": time.perf_counter() - wall_start, "choices": _choices(), "method": method.hparams(),
            "noise": {"kind": pattern.kind, "rate": pattern.rate, "seed": pattern.seed,
                      "realised_error": nd.realised_error, "num_noisy": int((nd.train.labels != nd.true_train_labels).sum()),
                      "sha256": pattern.sha256()},
            "final": metrics, "best": best,
        }
        _write_soft_labels(out, method, train_labels, true_labels)
        logger.write_summary(summary)
        hparams = flatten({k: v for k, v in config.items() if k not in ("paths", "hydra")})
        hparams = {k: v for k, v in hparams.items() if "._" not in k and not k.startswith("_")}
        hparams.update({f"effective.{k}": v for k, v in method.hparams().items()})
        hparams.update({f"choice.{k}": v for k, v in _choices().items()})
        results = {f"final/{k}": v for k, v in metrics.items() if k.split("/")[0] in ("train", "val", "test", "sat")}
        results["params"] = float(params)
        logger.log_hparams(hparams, results)
    finally:
        logger.close()
    _print_run_table(summary)
    return summary


def _write_soft_labels(out: Path, method, given: torch.Tensor, true: torch.Tensor) -> None:
    """SAT's refined labels, and the samples whose refined label disagrees with the
    given one (suspected label errors), most confident first."""
    soft = method.soft_labels()
    if soft is None or soft.numel() == 0:
        return
    soft, given, true = soft.detach().cpu(), given.cpu(), true.cpu()
    atomic_torch_save({"soft_labels": soft, "given_labels": given, "true_labels": true}, out / "soft_labels.pt")
    confidence, argmax = soft.max(dim=1)
    suspects = torch.nonzero(argmax != given).flatten()
    suspects = suspects[confidence[suspects].argsort(descending=True)]
    with open(out / "label_errors.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["index", "given_label", "soft_label_argmax", "confidence", "true_label"])
        for i in suspects.tolist():
            w.writerow([i, int(given[i]), int(argmax[i]), f"{float(confidence[i]):.4f}", int(true[i])])


def _print_run_table(s: dict[str, Any]) -> None:
    f, b, n = s["final"], s["best"], s["noise"]
    rows = [
        ("method", ", ".join([s["choices"].get("method", "")] + [f"{k} {v}" for k, v in s["method"].items()
                                                                 if k in ("alpha", "start_epoch", "beta")]).strip(", ")),
        ("noise", f"{n['kind']} rate {n['rate']:g} -> {100 * n['realised_error']:.1f}% wrong training labels"),
        ("final test acc", f"{100 * f.get('test/acc', math.nan):.2f}%"),
        ("best test acc", f"{100 * b['test/acc']:.2f}% (epoch {b['epoch']}, picked by val acc {100 * b['val/acc']:.2f}%)"
         if b else "n/a (no validation split)"),
    ]
    if "sat/label_recovery" in f:
        rows.append(("label recovery", f"{100 * f['sat/label_recovery']:.1f}% of wrong labels corrected by the soft targets"))
    rows += [("run folder", s["output_dir"]), ("tensorboard", f"tensorboard --logdir {s['output_dir']}")]
    width = max(len(k) for k, _ in rows)
    print("\n".join(["", "=" * 60] + [f"{k:<{width}}  {v}" for k, v in rows] + ["=" * 60]), flush=True)


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
        raise SystemExit(f"error: {user_error}\n(run folder: {out})") from None
    except BaseException:
        log.exception("run failed; run folder: %s", out)
        raise


# --- evaluate -------------------------------------------------------------------------


def restore_run(checkpoint: str, device: torch.device, dataset_root: str | None = None):
    """Rebuild a run's data (with its exact noise) and model from a checkpoint.

    Returns ``(state, run_config, noisy_data, model)``; the model is in eval mode on
    ``device``. The noise comes from the run's ``noise.pt`` when it is still next to
    the checkpoint, else it is redrawn from the stored (seeded) config; either way its
    hash must match the one the checkpoint recorded.
    """
    state = load_checkpoint(checkpoint)
    run_cfg = OmegaConf.create(state["config"])
    if dataset_root is not None:
        if "root" not in run_cfg.dataset:
            raise UserError(f"dataset_root={dataset_root!r} given, but dataset {run_cfg.dataset._target_} reads no files")
        run_cfg.dataset.root = dataset_root
    noise_file = Path(checkpoint).expanduser().resolve().parent.parent / "noise.pt"
    pattern = NoisePattern.load(noise_file) if noise_file.is_file() else None
    nd = load_noisy_data(run_cfg.dataset, run_cfg.noise, pattern)
    if nd.pattern.sha256() != state["noise_sha256"]:
        raise UserError(f"checkpoint={checkpoint!r}: its noise pattern (hash {state['noise_sha256'][:12]}) could not be "
                        f"reproduced; put the run's noise.pt at {noise_file}")
    data = nd.data
    model = build_model(run_cfg.model, data.num_classes, data.input_shape, data.mean, data.std)
    model.load_state_dict(state["model"])
    return state, run_cfg, nd, model.to(device).eval()


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test accuracy of a checkpoint, and where its run had label noise, accuracy on
    the clean and on the noisy-labelled training samples (memorisation)."""
    device = resolve_device(cfg.device)
    amp_dtype = resolve_precision(cfg.precision, device)
    state, run_cfg, nd, model = restore_run(cfg.checkpoint, device, cfg.dataset_root)
    test = evaluate_model(model, nd.data.test.images.to(device), nd.data.test.labels.to(device), cfg.batch_size, amp_dtype)
    result: dict[str, Any] = {
        "checkpoint": str(cfg.checkpoint), "epoch": state["epoch"], "dataset": nd.data.name,
        "test/acc": test["acc"], "test/loss": test["loss"],
        "noise": {"kind": nd.pattern.kind, "rate": nd.pattern.rate, "seed": nd.pattern.seed,
                  "realised_error": nd.realised_error},
    }
    given, true = nd.train.labels, nd.true_train_labels
    noisy = given != true
    if bool(noisy.any()):
        logits = predict(model, nd.train.images.to(device), cfg.batch_size, amp_dtype).cpu()
        result["train_clean/acc"] = accuracy_and_loss(logits[~noisy], given[~noisy]).get("acc", math.nan)
        result["train_noisy/acc_given"] = accuracy_and_loss(logits[noisy], given[noisy])["acc"]
        result["train_noisy/acc_true"] = accuracy_and_loss(logits[noisy], true[noisy])["acc"]
        result["train_noisy/count"] = int(noisy.sum())
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(result, indent=2))
    rows = [("checkpoint", f"{cfg.checkpoint} (epoch {state['epoch']})"), ("test acc", f"{100 * result['test/acc']:.2f}%")]
    if "train_noisy/acc_given" in result:
        rows += [
            ("train acc, clean labels", f"{100 * result['train_clean/acc']:.2f}%"),
            ("train acc, noisy labels", f"{100 * result['train_noisy/acc_given']:.2f}% fit the given (wrong) label, "
                                        f"{100 * result['train_noisy/acc_true']:.2f}% predict the true one"),
        ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    print(json.dumps(result), flush=True)
    return result
