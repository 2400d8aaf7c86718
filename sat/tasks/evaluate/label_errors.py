"""``report=label_errors``: the training labels a checkpoint suspects. By the run's soft
targets where its method keeps them (SAT, ELR, ELR+: asked of the method itself), else
by the model's own probabilities; with ``detector=confident_learning`` every detector
side by side. Writes the ranked suspects (``label_errors.csv``), how well they match the
known wrong labels (``label_errors.json``), their review page (``label_errors.html``), a
picture grid of the top suspects, and a refined label file a later run can train on
(``noise=refined noise.from_file=...``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sat.config import validate
from sat.data.noise import NoisePattern
from sat.data.noise.refined import refined_pattern
from sat.engine import predict_images
from sat.label_errors.detection import detection_quality, disagreement_with_given, flags_from_argmax
from sat.label_errors.export import write_label_errors
from sat.label_errors.page import page_summary, run_key, write_review_page
from sat.run.figures import pyplot, save
from sat.run.files import write_json_atomic
from sat.tasks.evaluate.base import Evaluation, Report, print_rows, save_next_to_run
from sat.tasks.evaluate.label_detectors import DETECTORS, compare_detectors, format_table
from sat.tasks.restore import RestoredRun


def soft_targets(run: RestoredRun) -> torch.Tensor | None:
    """The run's soft targets as its method gives them (one row per training sample), or
    None where the method keeps none."""
    targets = run.build_method().soft_labels()
    if not isinstance(targets, torch.Tensor) or targets.shape != (len(run.data.train), run.data.num_classes):
        return None
    return targets.detach().float().cpu()


def model_probabilities(run: RestoredRun, batch_size: int, amp_dtype: Any) -> torch.Tensor:
    nd = run.data
    logits = predict_images(run.model, nd.train.images.to(run.device), batch_size, amp_dtype)[:, : nd.num_classes]
    return logits.float().softmax(dim=1).cpu()


class LabelErrorReport(Report):
    name = "label_errors"

    def __init__(self, top_suspects: int = 64, detector: str = "model", folds: int = 5, cv_epochs: int | None = None):
        self.top_suspects = validate.positive_int("top_suspects", top_suspects)
        self.detector = validate.choice("detector", detector, DETECTORS)
        self.folds = validate.number("folds", folds, lo=2, integer=True)
        self.cv_epochs = None if cv_epochs is None else validate.positive_int("cv_epochs", cv_epochs)

    def __call__(self, evaluation: Evaluation) -> dict[str, Any]:
        checkpoint, run = evaluation.runs[0]
        out, nd = evaluation.out, run.data
        given, true, ids = nd.train.labels, nd.true_train_labels, nd.train.ids
        targets = soft_targets(run)
        if targets is not None:
            distribution, source = targets, "soft targets"
        else:
            distribution, source = model_probabilities(run, evaluation.batch_size, evaluation.amp_dtype), \
                "model probabilities"
        scores = disagreement_with_given(distribution, given)
        flagged = flags_from_argmax(distribution, given)
        suggested = distribution.argmax(dim=1)
        wrong = given != true
        result: dict[str, Any] = {"report": self.name, "checkpoint": str(checkpoint), "epoch": run.state["epoch"],
                                  "source": source, "num_train": len(given), "flagged": int(flagged.sum()),
                                  "noise": nd.noise_summary()}
        if bool(wrong.any()):
            result["detection"] = detection_quality(scores, wrong, flagged)
            result["label_recovery"] = float((suggested[wrong] == true[wrong]).float().mean())
        detectors, detector_scores = None, None
        if self.detector == "confident_learning":
            detectors, detector_scores = compare_detectors(
                run, targets, batch_size=evaluation.batch_size, amp_dtype=evaluation.amp_dtype, folds=self.folds,
                cv_epochs=self.cv_epochs, seed=evaluation.seed)
        files = nd.train.file_names()
        write_label_errors(out / "label_errors.csv", distribution, given, ids, true, files)
        epoch = int(run.state["epoch"])
        write_review_page(out / "label_errors.html", distribution, given, ids, true=true, files=files,
                          images=nd.train.images, class_names=nd.data.class_names, scores=detector_scores,
                          run_key=run_key(checkpoint, epoch), summary=page_summary(
                              checkpoint=checkpoint, epoch=epoch, dataset=nd.data.name, noise=result["noise"],
                              source=source, flagged=result["flagged"], num_train=len(given),
                              detection=result.get("detection"), detectors=detectors))
        order = torch.argsort(scores, descending=True, stable=True)
        figure = suspects_grid(nd.train.images, given, suggested, true, ids, order[:self.top_suspects],
                               out / "label_error_suspects")
        refined_labels(nd, suggested, source={"rule": f"every suggestion of the {source}", "checkpoint": str(checkpoint),
                                              "epoch": epoch}).save(out / "refined_labels.pt")
        result["files"] = [str(out / name) for name in ("label_errors.json", "label_errors.csv", "label_errors.html")] \
            + [*map(str, figure), str(out / "refined_labels.pt")]
        if detectors is not None:
            result["detectors"] = detectors
        write_json_atomic(out / "label_errors.json", result)
        beside = save_next_to_run(checkpoint, "label_errors.json", result)
        self._print(result, detectors, beside)
        return result

    @staticmethod
    def _print(result: dict[str, Any], detectors: dict[str, dict[str, float]] | None, beside: Path | None) -> None:
        rows = [("checkpoint", f"{result['checkpoint']} (epoch {result['epoch']})"),
                ("suspects", f"{result['flagged']} of {result['num_train']} training labels (by the {result['source']})")]
        if "detection" in result:
            q = result["detection"]
            rows += [("against the known wrong labels", f"precision {100 * q['precision']:.1f}%, recall "
                                                         f"{100 * q['recall']:.1f}%, AUROC {100 * q['auroc']:.1f}%"),
                     ("label recovery", f"{100 * result['label_recovery']:.1f}% of wrong labels get their true class "
                                        "as the suggestion")]
        rows.append(("results", ", ".join(result["files"]) + (f" and {beside}" if beside else "")))
        print_rows(rows)
        if detectors is not None:
            print(format_table(detectors), flush=True)


def refined_labels(nd, suggested: torch.Tensor, source: dict[str, Any] | None = None) -> NoisePattern:
    """The training pool's labels with each training sample's label replaced by the
    suggested one, as a pattern for ``noise=refined``. The validation samples, wherever
    the holdout took them from the pool (its tail, or seeded positions), keep their given
    labels: they must stay an honest, equally noisy selection set. ``source``: where the
    suggestions came from, recorded in the summary of a run on them."""
    pool = nd.data.train
    labels = nd.pattern.labels.clone()  # the pool's given labels, in the pool's order
    position = {sample: at for at, sample in enumerate(pool.ids.tolist())}
    trained = torch.tensor([position[sample] for sample in nd.train.ids.tolist()], dtype=torch.long)
    labels[trained] = suggested.long()
    # samples the run itself left out (it trained on cleaned labels) stay out
    return refined_pattern(labels, pool.labels, nd.data.identity(), removed=nd.pattern.removed, source=source)


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
