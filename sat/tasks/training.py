"""The train task: one model, as the config describes, with logging and checkpoints."""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from sat.checkpoint import atomic_torch_save, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from sat.data.loader import DeviceLoader
from sat.engine import evaluate as evaluate_model, train_one_epoch
from sat.errors import UserError
from sat.loggers import RunLogger, flatten
from sat.models import count_parameters
from sat.tasks.common import (build_model, choices, job_num, load_noisy_data, plain, resolve_device,
                              resolve_precision)

log = logging.getLogger("sat")

# Config groups whose values define what a checkpoint's state means; resuming with
# different ones would silently train something else.
RUN_IDENTITY_KEYS = ("dataset", "model", "noise", "method", "augment")


def check_resumable(cfg: DictConfig, stored: dict) -> None:
    now = {k: plain(cfg.get(k)) for k in RUN_IDENTITY_KEYS}
    if isinstance(now.get("dataset"), dict):  # where the files lie may change
        now["dataset"].pop("root", None)
        stored = {**stored, "dataset": {k: v for k, v in (stored.get("dataset") or {}).items() if k != "root"}}
    differ = sorted(k for k in RUN_IDENTITY_KEYS if now.get(k) != stored.get(k))
    if differ:
        raise UserError(
            f"resume: the checkpoint was trained with other {', '.join(differ)} settings; rerun with the run's own config: "
            f"python train.py --config-dir RUN/.hydra --config-name config resume=CHECKPOINT"
        )


def _torch_setup(cfg: DictConfig) -> tuple[torch.device, torch.dtype | None, bool]:
    """Device, autocast dtype and memory format for this run; seeds PyTorch."""
    device = resolve_device(cfg.device, job_num())
    amp_dtype = resolve_precision(cfg.trainer.precision, device)
    if cfg.trainer.num_threads:  # parallel CPU jobs of a sweep must share the cores
        torch.set_num_threads(cfg.trainer.num_threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.seed)
    return device, amp_dtype, device.type == "cuda" and cfg.trainer.channels_last


def _checkpoint_names(done: int, is_best: bool, every: int, first: int) -> list[str]:
    """``last`` always, ``best`` on a new best, ``epoch_N`` every ``every`` epochs from ``first``."""
    names = ["last"] + (["best"] if is_best else [])
    if every > 0 and done >= first and (done - first) % every == 0:
        names.append(f"epoch_{done}")
    return names


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train one model as ``cfg`` describes; returns the run's summary."""
    wall_start = time.perf_counter()
    out = Path(cfg.paths.output_dir)
    device, amp_dtype, channels_last = _torch_setup(cfg)
    resumed = load_checkpoint(cfg.resume) if cfg.resume else None
    if resumed is not None:
        check_resumable(cfg, resumed["config"])

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
    train_labels, true_labels = nd.train.labels.to(device), nd.true_train_labels.to(device)
    noisy = train_labels != true_labels
    method = instantiate(cfg.method)
    method.setup(train_labels, data.num_classes)
    method.to(device)
    optimizer = instantiate(cfg.optimizer)(model.parameters())  # a partial: params known only now
    scheduler = instantiate(cfg.scheduler)(optimizer)
    loader = DeviceLoader(nd.train.images.to(device), train_labels, cfg.trainer.batch_size, shuffle=True,
                          augment=instantiate(cfg.augment), seed=cfg.seed)
    step_model = torch.compile(model) if cfg.trainer.compile else model
    eval_sets = {"val": (nd.val.images.to(device), nd.val.labels.to(device)),
                 "test": (data.test.images.to(device), data.test.labels.to(device))}

    start_epoch, best = 0, None
    if resumed is not None:
        for obj, key in [(model, "model"), (optimizer, "optimizer"), (scheduler, "scheduler"), (method, "method"),
                         (loader, "loader")]:
            obj.load_state_dict(resumed[key])
        set_rng_state(resumed["rng"])
        start_epoch, best = resumed["epoch"], resumed["best"]
        log.info("resumed from %s after epoch %d", cfg.resume, start_epoch)

    params, config, epochs = count_parameters(model), plain(cfg), cfg.trainer.epochs
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
            if soft is not None and bool(noisy.any()):
                metrics.update(_label_error_metrics(soft, train_labels, true_labels, noisy))
            metrics["time/epoch_s"] = time.perf_counter() - tic
            done = epoch + 1
            logger.log_epoch(done, metrics)

            is_best = "val/acc" in metrics and (best is None or metrics["val/acc"] > best["val/acc"])
            if is_best:
                best = {"epoch": done, "val/acc": metrics["val/acc"], "test/acc": metrics["test/acc"]}
            state = {
                "epoch": done, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "method": method.state_dict(), "loader": loader.state_dict(),
                "rng": rng_state(), "best": best, "metrics": metrics, "config": config,
                "noise_sha256": pattern.sha256(), "params": params,
            }
            names = _checkpoint_names(done, is_best, cfg.trainer.checkpoint_every, cfg.trainer.checkpoint_from)
            save_checkpoint(state, *(out / "checkpoints" / f"{name}.pt" for name in names))

        summary = {
            "name": cfg.name, "output_dir": str(out), "seed": cfg.seed, "epochs": epochs, "params": params,
            "wall_time_s": time.perf_counter() - wall_start, "choices": choices(), "method": method.hparams(),
            "noise": {"kind": pattern.kind, "rate": pattern.rate, "seed": pattern.seed,
                      "realised_error": nd.realised_error, "num_noisy": int(noisy.sum()), "sha256": pattern.sha256()},
            "final": metrics, "best": best,
        }
        _write_soft_labels(out, method, train_labels, true_labels)
        logger.write_summary(summary)
        logger.log_hparams(_hparams(config, method.hparams()), _results(metrics, params))
    finally:
        logger.close()
    _print_run_table(summary)
    return summary


def _label_error_metrics(soft: torch.Tensor, given: torch.Tensor, true: torch.Tensor, noisy: torch.Tensor) -> dict:
    """How well the soft targets find the wrong labels: ``label_recovery`` (wrong labels
    whose soft target points to the true class) and, treating "soft-target argmax !=
    given label" as a detector of label errors, its precision and recall."""
    guess = soft.argmax(dim=1)
    flagged = guess != given
    hits = (flagged & noisy).sum()
    recovery, precision, recall = torch.stack([
        (guess[noisy] == true[noisy]).float().mean(),
        hits / flagged.sum().clamp(min=1),
        hits / noisy.sum(),
    ]).tolist()
    return {"sat/label_recovery": recovery, "sat/detection_precision": precision, "sat/detection_recall": recall}


def _hparams(config: dict[str, Any], effective: dict[str, Any]) -> dict[str, Any]:
    """The HParams-tab columns: every config value under its override name
    (``method.alpha``), the method's effective values, and the group choices."""
    flat = flatten({k: v for k, v in config.items() if k not in ("paths", "hydra")})
    flat = {k: v for k, v in flat.items() if "._" not in k and not k.startswith("_")}
    flat.update({f"effective.{k}": v for k, v in effective.items()})
    flat.update({f"choice.{k}": v for k, v in choices().items()})
    return flat


def _results(metrics: dict[str, float], params: int) -> dict[str, float]:
    results = {f"final/{k}": v for k, v in metrics.items() if k.split("/")[0] in ("train", "val", "test", "sat")}
    return {**results, "params": float(params)}


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


