"""The evaluate task: a checkpoint's test accuracy and its memorisation of noisy labels."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig

from sat.config import trust
from sat.config import validate
from sat.engine import accuracy_and_loss, predict
from sat.run.folder import RunFolder, prepare_output_dir, write_json_atomic
from sat.tasks.common import resolve_device, resolve_precision
from sat.errors import UserError
from sat.tasks.evaluate import representation
from sat.tasks.evaluate.reports import checked_top, label_error_report, selective_calibration, selective_report
from sat.tasks.evaluate.label_detectors import check_detector, compare_detectors, format_table
from sat.tasks.restore import RestoredRun, restore_run
from sat.config.schema import read


def trusted_packages(cfg: DictConfig) -> list[str]:
    value = read(cfg, "trusted_packages") or []
    if isinstance(value, str):
        value = [value]
    return trust.trusted_package_names([str(v) for v in value])


def data_dir(cfg: DictConfig) -> str:
    """Where dataset files are read from: ``dataset_root=`` or the current data folder,
    never a path stored in the checkpoint."""
    return str(read(cfg, "dataset_root") or read(cfg, "paths.data_dir"))


def save_next_to_run(checkpoint: Path, name: str, result: dict[str, Any], stem: str | None = None) -> Path | None:
    """Also keep a result in the evaluated run's own folder (``RUN/evaluations/``), under
    a new name each time: an evaluation never overwrites another. ``stem``: what the
    result covers (default: the checkpoint's name, ``last``)."""
    run = RunFolder.of_checkpoint(checkpoint)
    if run is None:
        return None
    folder = run / "evaluations"
    try:
        folder.mkdir(exist_ok=True)
        path = folder / f"{stem or checkpoint.stem}.{name}"
        base, suffix, n = path.stem, path.suffix, 1
        while path.exists():
            n += 1
            path = folder / f"{base}.{n}{suffix}"
        write_json_atomic(path, result)
    except OSError:  # a run folder we may read but not write: the result is in the output folder anyway
        return None
    return path


REPORTS = ("accuracy", "selective", "label_errors", *representation.REPORTS)


def checkpoint_list(value: Any) -> list[Path]:
    """``checkpoint=a.pt`` or ``checkpoint=[a.pt,b.pt]``."""
    values = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    if not values:
        raise UserError("checkpoint=[] names no checkpoint; accepted: checkpoint=RUN/checkpoints/best.pt or a list")
    return [Path(str(v)).expanduser() for v in values]


def run(cfg: DictConfig) -> dict[str, Any]:
    """``report=accuracy`` (default): test accuracy and memorisation of one checkpoint;
    ``report=selective``: coverage-risk of one or several; ``report=label_errors``: the
    training labels a checkpoint suspects."""
    report = validate.choice("report", read(cfg, "report"), REPORTS)
    checkpoints = checkpoint_list(read(cfg, "checkpoint"))
    if len(checkpoints) > 1 and report != "selective":
        raise UserError(f"checkpoint= names {len(checkpoints)} checkpoints; report={report} takes one (evaluate several "
                        "with python evaluate.py -m checkpoint=a.pt,b.pt)")
    device = resolve_device(read(cfg, "device"))
    amp_dtype = resolve_precision(read(cfg, "trainer.precision"), device)
    batch_size = validate.positive_int("trainer.eval_batch_size", read(cfg, "trainer.eval_batch_size"))
    if report == "selective":
        calibration = selective_calibration(read(cfg, "calibration_size"), read(cfg, "calibration_seed"))
    top = checked_top(read(cfg, "top_suspects")) if report == "label_errors" else 0
    detector = check_detector(read(cfg, "detector")) if report == "label_errors" else "model"
    out = prepare_output_dir(read(cfg, "paths.output_dir"))
    cache: dict = {}
    runs = [(c, restore_run(c, device, data_dir(cfg), trusted_packages(cfg), cache)) for c in checkpoints]
    if report != "accuracy" and any(r.data.loader_kind != "device" for _, r in runs):
        raise UserError(f"report={report} needs the run's images on the device; accepted: runs of datasets that fit "
                        "(dataset.loader=device), or report=accuracy")
    if report == "selective":
        return selective_report(runs, out, batch_size, amp_dtype, *calibration)
    if report in representation.REPORTS:
        keys = ("label_fraction", "labels_per_class", "knn_k", "knn_temperature", "seed")
        return representation.representation_report(report, *runs[0], out, batch_size, {k: read(cfg, k) for k in keys},
                                                     trusted_packages(cfg))
    if report == "label_errors":
        detectors = compare_detectors(runs[0][1], batch_size=batch_size, amp_dtype=amp_dtype, folds=read(cfg, "folds"),
                                      cv_epochs=read(cfg, "cv_epochs"), seed=read(cfg, "seed"),
                                      trusted_packages=trusted_packages(cfg)) if detector == "confident_learning" else None
        result = label_error_report(*runs[0], out, batch_size, amp_dtype, top, detectors)
        beside = save_next_to_run(checkpoints[0], "label_errors.json", result)
        if detectors is not None:
            print(format_table(detectors))
        print(json.dumps({k: v for k, v in result.items() if k != "noise"}, indent=2))
        print("results: " + ", ".join(result["files"]) + (f" and {beside}" if beside else ""), flush=True)
        return result
    return accuracy_report(*runs[0], out, batch_size, amp_dtype, device)


def accuracy_report(checkpoint: Path, run: RestoredRun, out: Path, batch_size: int, amp_dtype: Any,
                    device: Any) -> dict[str, Any]:
    """Test accuracy of a checkpoint, and where its run had label noise, accuracy on
    the clean and on the noisy-labelled training samples (memorisation)."""
    nd, model, state = run.data, run.model, run.state
    classes = nd.num_classes  # an abstaining model's extra output is not a class

    def logits_of(split) -> torch.Tensor:
        return predict(model, split.loader(batch_size, device=device), amp_dtype)[0][:, :classes].cpu()

    test = accuracy_and_loss(logits_of(nd.test), nd.test.labels)
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint), "epoch": state["epoch"], "dataset": nd.data.name, "run_seed": run.seed,
        "test/acc": test["acc"], "test/loss": test["loss"], "noise": nd.noise_summary(),
    }
    given, true = nd.train.labels, nd.true_train_labels
    noisy = given != true if true is not None else torch.zeros_like(given, dtype=torch.bool)
    if bool(noisy.any()):
        logits = logits_of(nd.train)
        result["train_clean/acc"] = accuracy_and_loss(logits[~noisy], given[~noisy]).get("acc", math.nan)
        result["train_noisy/acc_given"] = accuracy_and_loss(logits[noisy], given[noisy])["acc"]
        result["train_noisy/acc_true"] = accuracy_and_loss(logits[noisy], true[noisy])["acc"]
        result["train_noisy/count"] = int(noisy.sum())
    return _report_accuracy(checkpoint, run, out, result)


def _report_accuracy(checkpoint: Path, run: RestoredRun, out: Path, result: dict[str, Any]) -> dict[str, Any]:
    state = run.state
    write_json_atomic(out / "evaluation.json", result)
    beside = save_next_to_run(checkpoint, "evaluation.json", result)
    rows = [("checkpoint", f"{checkpoint} (epoch {state['epoch']})"), ("test acc", f"{100 * result['test/acc']:.2f}%")]
    if "train_noisy/acc_given" in result:
        rows += [
            ("train acc, clean labels", f"{100 * result['train_clean/acc']:.2f}%"),
            ("train acc, noisy labels", f"{100 * result['train_noisy/acc_given']:.2f}% fit the given (wrong) label, "
                                        f"{100 * result['train_noisy/acc_true']:.2f}% predict the true one"),
        ]
    rows.append(("results", f"{out / 'evaluation.json'}" + (f" and {beside}" if beside else "")))
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    print(json.dumps(result), flush=True)
    return result
