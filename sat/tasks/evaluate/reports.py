"""The other reports of ``evaluate.py``: selective classification (``report=selective``)
and label errors (``report=label_errors``), each from any checkpoint of the framework."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from sat.config import validate
from sat.data.noise import NoisePattern
from sat.label_errors.detection import detection_quality, disagreement_with_given, flags_from_argmax
from sat.engine import predict_images
from sat.run.figures import pyplot, save
from sat.label_errors.export import write_label_errors
from sat.selective.evaluate import evaluate_model as selective_evaluation
from sat.selective.outputs import plot_risk_coverage, write_csv
from sat.selective.risk import SelectiveResult
from sat.run.folder import RunFolder, write_json_atomic
from sat.tasks.restore import RestoredRun


def method_name(run: RestoredRun, checkpoint: Path) -> str:
    """The run's ``method`` option (from its summary.json), else its class name."""
    summary = RunFolder(RunFolder.of_checkpoint(checkpoint, record=False)).summary_file
    try:
        choice = json.loads(summary.read_text()).get("choices", {}).get("method")
    except (OSError, ValueError):
        choice = None
    return str(choice or str((run.config.get("method") or {}).get("_target_", "?")).rsplit(".", 1)[-1])


# --- report=selective ---------------------------------------------------------------------


def selective_report(runs: list[tuple[Path, RestoredRun]], out: Path, batch_size: int, amp_dtype: Any,
                     calibration_size: int, calibration_seed: int) -> dict[str, Any]:
    """Selective error at the standard coverages for each checkpoint, thresholds from the
    run's validation split (or, without one, from ``calibration_size`` test images held
    apart), the area under the risk-coverage curve, CSV and one figure for all."""
    results: list[SelectiveResult] = []
    for checkpoint, run in runs:
        nd, device = run.data, next(run.model.parameters()).device
        calibration = (nd.val.images.to(device), nd.val.labels.to(device)) if nd.val is not None and len(nd.val) else None
        name = f"{method_name(run, checkpoint)} (epoch {run.state['epoch']})"
        results.append(selective_evaluation(
            name, run.model, nd.data.num_classes, (nd.test.images.to(device), nd.test.labels.to(device)),
            calibration, calibration_size, calibration_seed, batch_size=batch_size, amp_dtype=amp_dtype,
            meta={"checkpoint": str(checkpoint), "epoch": run.state["epoch"], "run_seed": run.seed,
                  "dataset": nd.data.name, "noise": nd.pattern.kind, "noise_rate": nd.pattern.rate}))
    files = [write_csv(out / "selective.csv", results), *plot_risk_coverage(results, out / "risk_coverage")]
    width = max(len(r.name) for r in results)
    print(f"{'':<{width}}  {'cov%':>5} " + " ".join(f"{round(100 * p.target):>5}" for p in results[0].points))
    for r in results:
        print(f"{r.name:<{width}}  {'err%':>5} " + " ".join(f"{100 * p.selective_error:5.1f}" for p in r.points)
              + f"   AURC {100 * r.aurc:.2f}%  ({r.meta['score']} score, calibration: {r.meta['calibration']})")
    summary = {"report": "selective", "test/acc": 1.0 - results[0].error, "files": [str(f) for f in files],
               "results": [{"name": r.name, "aurc": r.aurc, "eaurc": r.eaurc, "error": r.error, **r.meta,
                            "selective_error": {f"{round(100 * p.target)}": p.selective_error for p in r.points},
                            "coverage": {f"{round(100 * p.target)}": p.coverage for p in r.points}}
                           for r in results]}
    write_json_atomic(out / "selective.json", summary)
    print("results: " + ", ".join(map(str, [out / "selective.json", *files])), flush=True)
    return summary


# --- report=label_errors ------------------------------------------------------------------


def label_error_report(checkpoint: Path, run: RestoredRun, out: Path, batch_size: int, amp_dtype: Any,
                       top: int, detectors: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """Which training labels the checkpoint suspects: by its soft targets where the
    method keeps them (SAT, ELR), else by the model's own probabilities. Writes the
    ranked suspects (CSV), how well they match the known wrong labels (JSON), a picture
    grid of the top suspects, and a refined label file a later run can train on
    (``noise=refined noise.from_file=...``). ``detectors``: every detector's quality
    (``sat.tasks.evaluate.label_detectors.compare_detectors``), kept in the JSON beside."""
    nd, device = run.data, next(run.model.parameters()).device
    given, true, ids = nd.train.labels, nd.true_train_labels, nd.train.ids
    targets = (run.state.get("method") or {}).get("targets")
    if targets is None:
        targets = (run.state.get("method") or {}).get("natural.targets")  # TRADES+SAT
    if isinstance(targets, torch.Tensor) and targets.shape == (len(given), nd.data.num_classes):
        distribution, source = targets.float(), "soft targets"
    else:
        logits = predict_images(run.model, nd.train.images.to(device), batch_size, amp_dtype)[:, : nd.data.num_classes]
        distribution, source = logits.float().softmax(dim=1).cpu(), "model probabilities"
    scores = disagreement_with_given(distribution, given)
    flagged = flags_from_argmax(distribution, given)
    suggested = distribution.argmax(dim=1)
    wrong = given != true
    result: dict[str, Any] = {"report": "label_errors", "checkpoint": str(checkpoint), "epoch": run.state["epoch"],
                              "source": source, "num_train": len(given), "flagged": int(flagged.sum()),
                              "noise": nd.noise_summary()}
    if bool(wrong.any()):
        result["detection"] = detection_quality(scores, wrong, flagged)
        result["label_recovery"] = float((suggested[wrong] == true[wrong]).float().mean())
    write_label_errors(out / "label_errors.csv", distribution, given, ids, true)
    order = torch.argsort(scores, descending=True, stable=True)
    figure = suspects_grid(nd.train.images, given, suggested, true, ids, order[:top], out / "label_error_suspects")
    refined = refined_labels(nd, suggested)
    refined.save(out / "refined_labels.pt")
    result["files"] = [str(out / name) for name in ("label_errors.json", "label_errors.csv")] \
        + [*map(str, figure), str(out / "refined_labels.pt")]
    if detectors is not None:
        result["detectors"] = detectors
    write_json_atomic(out / "label_errors.json", result)
    return result


def refined_labels(nd, suggested: torch.Tensor) -> NoisePattern:
    """The training pool's labels with each training sample's label replaced by the
    suggested one, as a pattern for ``noise=refined``. The validation samples, wherever
    the holdout took them from the pool (its tail, or seeded positions), keep their given
    labels: they must stay an honest, equally noisy selection set."""
    pool = nd.data.train
    labels = nd.pattern.labels.clone()  # the pool's given labels, in the pool's order
    position = {sample: at for at, sample in enumerate(pool.ids.tolist())}
    trained = torch.tensor([position[sample] for sample in nd.train.ids.tolist()], dtype=torch.long)
    labels[trained] = suggested.long()
    changed = torch.nonzero(labels != pool.labels).flatten()
    rate = len(changed) / max(len(pool), 1)
    return NoisePattern("refined", rate, 0, changed, labels, None, nd.data.identity())


def suspects_grid(images: torch.Tensor, given, suggested, true, ids, picks: torch.Tensor, stem: Path) -> list[Path]:
    """The most suspect training images with their given and suggested labels (and, in
    green or red, whether the given label was in fact wrong)."""
    plt = pyplot()
    n = max(len(picks), 1)
    cols = min(8, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.75 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, picks.tolist()):
        img = images[i].permute(1, 2, 0).numpy()
        ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray" if img.shape[2] == 1 else None)
        wrong = int(given[i]) != int(true[i])
        ax.set_title(f"#{int(ids[i])}: {int(given[i])}\u2192{int(suggested[i])}", fontsize=7,
                     color="#009E73" if wrong else "#D55E00")
    fig.suptitle("most suspect labels: id: given\u2192suggested (green: the given label was wrong)", fontsize=8)
    fig.tight_layout()
    return save(fig, stem)


def checked_top(value: Any) -> int:
    return validate.positive_int("top_suspects", value)


def selective_calibration(cfg_value_size: Any, cfg_value_seed: Any) -> tuple[int, int]:
    return (validate.positive_int("calibration_size", cfg_value_size),
            validate.number("calibration_seed", cfg_value_seed, integer=True))

