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
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sat.config import trust
from sat.config import validate
from sat.errors import UserError
from sat.models import with_normalization
from sat.run.folder import write_json_atomic
from sat.ssl import backbone
from sat.ssl.knn import check_knn, knn_accuracy
from sat.ssl.probe import linear_probe, select_labelled
from sat.tasks.restore import RestoredRun

REPORTS = ("linear_probe", "knn")


def random_init_model(run: RestoredRun, seed: int, trusted_packages: list[str]) -> nn.Module:
    """The run's architecture, freshly initialised (seeded), with the run's input normalisation."""
    data = run.data.data
    outputs = int(run.state.get("model_outputs") or data.num_classes)
    torch.manual_seed(seed)
    net = trust.build(run.config.get("model"), "model", "model", trusted_packages=trusted_packages,
                      num_classes=outputs, input_shape=tuple(data.input_shape))
    device = next(run.model.parameters()).device
    return with_normalization(net, tuple(data.mean), tuple(data.std)).to(device).eval()


def _score(report: str, model: nn.Module, train, test, batch_size: int, k: int, temperature: float,
           num_classes: int) -> float:
    device = next(model.parameters()).device
    f_train, y_train = backbone.extract(model, train.loader(batch_size, device=device))
    f_test, y_test = backbone.extract(model, test.loader(batch_size, device=device))
    if report == "knn":
        return knn_accuracy(f_train, y_train, f_test, y_test, num_classes, k, temperature)
    return linear_probe(f_train, y_train.cpu(), f_test, y_test.cpu())


def representation_report(report: str, checkpoint: Path, run: RestoredRun, out: Path, batch_size: int,
                          settings: dict[str, Any], trusted_packages: list[str]) -> dict[str, Any]:
    """``settings``: label_fraction, labels_per_class, knn_k, knn_temperature, seed."""
    k, temperature = check_knn(settings["knn_k"], settings["knn_temperature"], prefix="knn")
    seed = validate.number("seed", settings["seed"], integer=True)
    try:
        backbone.num_features(run.model)
    except UserError as e:
        raise UserError(f"report={report}: checkpoint={str(checkpoint)!r} has no backbone to evaluate ({e})") from None
    nd = run.data
    labelled = (nd.train.labels >= 0).nonzero().flatten()  # STL-10's unlabelled images have label -1
    train = nd.train.subset(labelled)
    train = train.subset(select_labelled(train.labels, settings.get("label_fraction"), settings.get("labels_per_class"),
                                         seed))
    test, classes = nd.test, nd.num_classes
    args = (train, test, batch_size, k, temperature, classes)
    trained = _score(report, run.model, *args)
    reference = _score(report, random_init_model(run, seed, trusted_packages), *args)
    result = {
        "report": report, "checkpoint": str(checkpoint), "epoch": run.state["epoch"], "dataset": nd.data.name,
        "run_seed": run.seed, "seed": seed, "labelled": len(train), "label_fraction": settings.get("label_fraction"),
        "labels_per_class": settings.get("labels_per_class"), "test/acc": trained, "random_init/test/acc": reference,
        **({"k": k, "temperature": temperature} if report == "knn" else {}),
    }
    from sat.tasks.evaluate import save_next_to_run  # (evaluation imports this module)

    write_json_atomic(out / f"{report}.json", result)
    beside = save_next_to_run(checkpoint, f"{report}.json", result)
    name = "linear probe" if report == "linear_probe" else f"kNN (k {k}, T {temperature:g})"
    rows = [("checkpoint", f"{checkpoint} (epoch {run.state['epoch']})"),
            ("labelled images", f"{len(train)}" + (f" ({settings['labels_per_class']} per class)"
                                                   if settings.get("labels_per_class") else "")),
            (f"{name}, trained", f"{100 * trained:.2f}%"),
            (f"{name}, random init", f"{100 * reference:.2f}%  ({100 * (trained - reference):+.2f} points)"),
            ("results", f"{out / f'{report}.json'}" + (f" and {beside}" if beside else ""))]
    width = max(len(key) for key, _ in rows)
    print("\n".join(f"{key:<{width}}  {value}" for key, value in rows))
    print(json.dumps(result), flush=True)
    return result
