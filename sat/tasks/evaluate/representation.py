"""``evaluate.py report=linear_probe|knn``: how good a checkpoint's backbone is as a
representation, by the field's protocols, always beside the same protocol on a randomly
initialised backbone of the same architecture (the reference point).

Features are extracted once, without augmentation, in eval mode. ``linear_probe``: a
logistic regression on the frozen training features, top-1 on the test features;
``knn``: weighted kNN (k 200, T 0.1, cosine) with the training features as the bank.
Both use the labelled training images (the run's training split, given labels; STL-10's
unlabeled ones left out), all of them or a seeded subset (``label_fraction``,
``labels_per_class``).
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from sat.errors import UserError
from sat.run.files import write_json_atomic
from sat.ssl import backbone
from sat.ssl.knn import check_knn, knn_accuracy
from sat.ssl.probe import check_label_subset, linear_probe, select_labelled
from sat.tasks.evaluate.base import Evaluation, Report, print_rows, save_next_to_run
from sat.tasks.restore import RestoredRun


def random_init_model(run: RestoredRun, seed: int) -> nn.Module:
    """The run's architecture, freshly initialised (seeded), with the run's input normalisation."""
    torch.manual_seed(seed)
    return run.build_model().to(run.device).eval()


def _features(model: nn.Module, train, test, batch_size: int):
    device = next(model.parameters()).device
    f_train, y_train = backbone.extract(model, train.loader(batch_size, device=device))
    f_test, y_test = backbone.extract(model, test.loader(batch_size, device=device))
    return f_train, y_train, f_test, y_test


class RepresentationReport(Report):
    """A self-supervised checkpoint's features, judged by labels it never saw: the score
    of its backbone beside the same backbone at random init (seeded), on all labelled
    training images or a part of them (``label_fraction`` or ``labels_per_class``)."""

    def __init__(self, label_fraction: float | None = None, labels_per_class: int | None = None):
        self.label_fraction, self.labels_per_class = check_label_subset(label_fraction, labels_per_class)

    def score(self, model: nn.Module, train, test, batch_size: int, num_classes: int) -> float:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def __call__(self, evaluation: Evaluation) -> dict[str, Any]:
        checkpoint, run = evaluation.runs[0]
        seed, out = evaluation.seed, evaluation.out
        try:
            backbone.num_features(run.model)
        except UserError as e:
            raise UserError(f"report={self.name}: checkpoint={str(checkpoint)!r} has no backbone to evaluate ({e})") \
                from None
        nd = run.data
        labelled = (nd.train.labels >= 0).nonzero().flatten()  # STL-10's unlabelled images have label -1
        train = nd.train.subset(labelled)
        train = train.subset(select_labelled(train.labels, self.label_fraction, self.labels_per_class, seed))
        args = (train, nd.test, evaluation.batch_size, nd.num_classes)
        trained = self.score(run.model, *args)
        reference = self.score(random_init_model(run, seed), *args)
        result = {
            "report": self.name, "checkpoint": str(checkpoint), "epoch": run.state["epoch"], "dataset": nd.data.name,
            "run_seed": run.seed, "seed": seed, "labelled": len(train), "label_fraction": self.label_fraction,
            "labels_per_class": self.labels_per_class, "test/acc": trained, "random_init/test/acc": reference,
            **self.settings(),
        }
        write_json_atomic(out / f"{self.name}.json", result)
        beside = save_next_to_run(checkpoint, f"{self.name}.json", result)
        print_rows([("checkpoint", f"{checkpoint} (epoch {run.state['epoch']})"),
                    ("labelled images", f"{len(train)}" + (f" ({self.labels_per_class} per class)"
                                                           if self.labels_per_class else "")),
                    (f"{self.describe()}, trained", f"{100 * trained:.2f}%"),
                    (f"{self.describe()}, random init", f"{100 * reference:.2f}%  ({100 * (trained - reference):+.2f} "
                                                        "points)"),
                    ("results", f"{out / f'{self.name}.json'}" + (f" and {beside}" if beside else ""))])
        print(json.dumps(result), flush=True)
        return result

    def settings(self) -> dict[str, Any]:
        return {}


class LinearProbeReport(RepresentationReport):
    """``report=linear_probe``: a logistic-regression probe on the frozen features."""

    name = "linear_probe"

    def score(self, model, train, test, batch_size, num_classes) -> float:
        f_train, y_train, f_test, y_test = _features(model, train, test, batch_size)
        return linear_probe(f_train, y_train.cpu(), f_test, y_test.cpu())

    def describe(self) -> str:
        return "linear probe"


class KnnReport(RepresentationReport):
    """``report=knn``: the weighted kNN classifier of the self-supervised literature
    (cosine similarity, ``k`` neighbours weighted by exp(similarity / ``temperature``))."""

    name = "knn"

    def __init__(self, k: int = 200, temperature: float = 0.1, label_fraction: float | None = None,
                 labels_per_class: int | None = None):
        super().__init__(label_fraction, labels_per_class)
        self.k, self.temperature = check_knn(k, temperature)

    def score(self, model, train, test, batch_size, num_classes) -> float:
        f_train, y_train, f_test, y_test = _features(model, train, test, batch_size)
        return knn_accuracy(f_train, y_train, f_test, y_test, num_classes, self.k, self.temperature)

    def describe(self) -> str:
        return f"kNN (k {self.k}, T {self.temperature:g})"

    def settings(self) -> dict[str, Any]:
        return {"k": self.k, "temperature": self.temperature}
