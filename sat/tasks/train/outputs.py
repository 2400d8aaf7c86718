"""What a training run writes besides checkpoints: label-error metrics, the refined
labels and their review page, TensorBoard's HParams entry and the closing table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sat.config.flat import flatten
from sat.engine import EpochStats
from sat.label_errors.detection import detection_quality, flags_from_argmax, soft_label_detection
from sat.label_errors.export import write_label_errors
from sat.label_errors.page import page_summary, run_key, write_review_page
from sat.run.checkpoint import atomic_torch_save
from sat.run.files import write_atomic
from sat.run.loggers import hparam, tracker_pointer
from sat.tasks.context import choices, current_sweep_job


def label_error_metrics(soft: torch.Tensor | None, given: torch.Tensor, true: torch.Tensor, noisy: torch.Tensor,
                        stats: EpochStats | None = None) -> dict[str, float]:
    """How well the run finds its wrong labels.

    Soft targets (SAT, ELR): ``sat/target_on_given`` (their mean mass on the given
    labels: 1 until they start moving); where labels are noisy, ``sat/label_recovery``
    (wrong labels whose target points to the true class) and ``detect/targets_*``:
    flagging "argmax != given label" (precision, recall, F1) and ranking by
    ``1 - t[given]`` (AUROC). ``detect/model_*``: the same for the model's own
    predictions in the training pass (every method's baseline)."""
    out: dict[str, float] = {}
    wrong = noisy.bool()
    if soft is not None:
        out["sat/target_on_given"] = float(soft.gather(1, given[:, None]).mean())
        if bool(wrong.any()):
            out["sat/label_recovery"] = float((soft.argmax(dim=1)[wrong] == true[wrong]).float().mean())
            out.update({f"detect/targets_{k}": v for k, v in soft_label_detection(soft, given, wrong).items()})
    if stats is not None and stats.prob_given is not None and bool(wrong.any()):
        scores = 1.0 - stats.prob_given.double()
        out.update({f"detect/model_{k}": v for k, v in detection_quality(scores, wrong, ~stats.predicts_given).items()})
    return out


def hparams_of(config: dict[str, Any], effective: dict[str, Any]) -> dict[str, Any]:
    """The HParams-tab columns: every config value under its override name
    (``method.alpha``), the method's effective values, and the group choices."""
    flat = flatten({k: v for k, v in config.items() if k not in ("paths", "hydra")})
    flat = {k: hparam(v) for k, v in flat.items() if "._" not in k and not k.startswith("_")}
    flat.update({k: hparam(v) for k, v in flatten({f"effective.{k}": v for k, v in effective.items()}).items()})
    flat.update({f"choice.{k}": v for k, v in choices().items()})
    return flat


def results_of(metrics: dict[str, float], params: int, at_best_val: dict[str, Any] | None = None) -> dict[str, float]:
    """The HParams-tab metrics: the final ones, and those of the best-validation epoch
    (the test accuracy a paper reports)."""
    results = {f"final/{k}": v for k, v in metrics.items() if k.split("/")[0] in ("train", "val", "test", "sat")}
    best = {f"at_best_val/{k}": float(v) for k, v in (at_best_val or {}).items()}
    return {**results, **best, "params": float(params)}


@dataclass(frozen=True)
class RunPage:
    """What the review page of a training run's suspects (``label_errors.html``) shows
    besides them: where they come from, and their images."""

    checkpoint: Path  # the run's last checkpoint (the page's decisions are kept under it)
    epoch: int
    dataset: str
    noise: dict[str, Any]  # the run's noise summary
    class_names: Sequence[str] = ()
    images: torch.Tensor | None = None  # uint8 (N, C, H, W) training images: thumbnails
    image_root: Path | None = None  # else a folder dataset's root: the page shows the files


def write_soft_labels(out: Path, method, given: torch.Tensor, true: torch.Tensor | None, ids: torch.Tensor,
                      files: list[str] | None = None, page: RunPage | None = None) -> None:
    """SAT's refined labels (``soft_labels.pt`` and, for other tools such as cleanlab or
    pandas, ``.npy`` arrays aligned row by row), and the samples whose refined label
    disagrees with the given one (suspected label errors, most suspect first), with
    their review page where ``page`` says what it shows. Every sample is named by its
    id in the dataset's original order."""
    soft = method.soft_labels()
    if soft is None or soft.numel() == 0:
        return
    soft, given, ids = soft.detach().float().cpu(), given.cpu(), ids.cpu()
    true = given.new_full(given.shape, -1) if true is None else true.cpu()  # -1: unknown (real noisy data)
    atomic_torch_save({"soft_labels": soft, "given_labels": given, "true_labels": true, "sample_ids": ids},
                      out / "soft_labels.pt")
    for name, tensor in (("soft_labels", soft), ("given_labels", given), ("sample_ids", ids)):
        write_atomic(out / f"{name}.npy", partial(np.save, arr=tensor.numpy()))
    write_label_errors(out / "label_errors.csv", soft, given, ids, true, files)
    if page is not None:
        wrong = true != given
        known = bool((true >= 0).all()) and bool(wrong.any())
        write_review_page(
            out / "label_errors.html", soft, given, ids, true=true, files=files, images=page.images,
            image_root=page.image_root, class_names=page.class_names, run_key=run_key(page.checkpoint, page.epoch),
            summary=page_summary(checkpoint=page.checkpoint, epoch=page.epoch, dataset=page.dataset, noise=page.noise,
                                 source="soft targets", flagged=int(flags_from_argmax(soft, given).sum()),
                                 num_train=len(given),
                                 detection=soft_label_detection(soft, given, wrong) if known else None))


def headline(named: dict[str, str], final: dict[str, float], at_best_val: dict[str, Any] | None
             ) -> dict[str, dict[str, Any]]:
    """The metrics the method names as its headline (:meth:`Method.headline`), final and at
    the best-validation epoch: ``{metric: {"label", "final", "at_best_val"}}``."""
    best = at_best_val or {}
    return {k: {"label": label, "final": final.get(k), "at_best_val": best.get(k)} for k, label in named.items()}


def _percent(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _wrapped(parts: list[str], width: int = 96) -> list[str]:
    """``parts`` joined by ", " into lines of at most ``width`` characters (a longer part alone)."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += ", " + part
        else:
            lines[-1:] = [lines[-1] + ","] if lines else []
            lines.append(part)
    return lines


def print_run_table(s: dict[str, Any]) -> None:
    """The closing box: the method with its own hyper-parameters (``hparams()``), the
    noise (where labels were made noisy) and the method's headline metrics, final and at
    the best-validation epoch (``headline()``: the test accuracy, kNN accuracy for a
    self-supervised method, label recovery where there are soft labels)."""
    f, b, n = s.get("final") or {}, s.get("at_best_val"), s["noise"]
    parts = [f"{k} {v}" for k, v in (s.get("method") or {}).items()]
    name = (s.get("choices") or {}).get("method")
    if name:
        parts[:1] = [f"{name}: {parts[0]}" if parts else name]
    rows = [("method", line) for line in _wrapped(parts)]
    if n.get("rate") or n.get("realised_error"):
        rows.append(("noise", f"{n['kind']} rate {n['rate']:g} -> {100 * n['realised_error']:.1f}% wrong training "
                              "labels"))
    named = s.get("headline") or headline({"test/acc": "test acc", **({"sat/label_recovery": "label recovery"}
                                                                      if "sat/label_recovery" in f else {})}, f, b)
    for metric in named.values():
        rows.append((f"final {metric['label']}", f"{_percent(metric['final'])} (epoch {s.get('epochs_done')})"))
        if b is None and metric is next(iter(named.values())):
            rows.append((f"{metric['label']} at best val epoch", "n/a (no validation split)"))
        elif b is not None and metric["at_best_val"] is not None:
            rows.append((f"{metric['label']} at best val epoch", f"{_percent(metric['at_best_val'])} (epoch "
                                                                 f"{b['epoch']}, val acc {100 * b['val/acc']:.2f}%)"))
    loggers = s.get("loggers", [(s.get("choices") or {}).get("logger")])  # (a summary from before "loggers")
    pointers = [p for p in (tracker_pointer(name, s["output_dir"]) for name in loggers) if p is not None]
    rows += [("run folder", s["output_dir"]), *pointers]
    width = max(len(k) for k, _ in rows)
    job = current_sweep_job().strip()  # in a sweep every line says which job it is
    lines = ["=" * 60] + [f"{k if i == 0 or k != rows[i - 1][0] else '':<{width}}  {v}" for i, (k, v) in
                          enumerate(rows)] + ["=" * 60]
    print("\n".join([""] + [f"{job} {line}" if job else line for line in lines]), flush=True)
