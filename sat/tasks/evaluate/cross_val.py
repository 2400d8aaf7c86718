"""Out-of-sample predicted probabilities by K-fold cross-validation, inside the framework
(confident learning needs them: a model scoring the labels it trained on has memorised
them).

The training split is cut into ``folds`` stratified folds (scikit-learn's
``StratifiedKFold``, seeded); for each, a fresh model of the run's architecture trains
with the run's method, optimizer and batch size on the other folds for ``epochs``
epochs (cosine schedule to 0), then predicts the held-out fold. Every sample's
probabilities come from the one model that never saw it.

A run's stored config is data (:mod:`sat.config.trust`): the model and method are rebuilt
through the registry, the optimizer only if it is one of :data:`OPTIMIZERS`, with plain
values. Not carried over: the run's augmentation (the fold models see the images as
they are) and its scheduler (cosine over the fold epochs instead).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sat.config import validate
from sat.data.loader import DeviceLoader
from sat.engine import EpochStats, predict_images, train_one_epoch
from sat.errors import UserError
from sat.methods.base import Method

log = logging.getLogger("sat")

OPTIMIZERS = {"torch.optim.SGD": torch.optim.SGD, "torch.optim.Adam": torch.optim.Adam,
              "torch.optim.AdamW": torch.optim.AdamW}


@dataclass
class CrossValidated:
    probs: torch.Tensor  # (N, K) float64: each sample's probabilities from the model of its held-out fold
    fold: torch.Tensor  # (N,) int64: which fold held each sample out


def optimizer_builder(node: Any) -> Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]:
    """The stored optimizer node as a builder, for the optimizers of :data:`OPTIMIZERS`
    with plain numeric/boolean settings only."""
    if not isinstance(node, dict) or node.get("_target_") not in OPTIMIZERS:
        target = node.get("_target_") if isinstance(node, dict) else node
        raise UserError(f"detector=confident_learning: the run's optimizer {target!r} cannot be rebuilt from its "
                        f"checkpoint; accepted: {', '.join(OPTIMIZERS)}")
    kwargs = {k: v for k, v in node.items() if not k.startswith("_")}
    for key, value in kwargs.items():
        if not isinstance(value, (int, float, bool)) and not (isinstance(value, list) and
                                                               all(isinstance(v, (int, float)) for v in value)):
            raise UserError(f"detector=confident_learning: optimizer.{key}={value!r} in the checkpoint is not a plain "
                            "value; accepted: numbers and booleans")
    cls = OPTIMIZERS[node["_target_"]]
    return lambda params: cls(params, **kwargs)


def fold_split(labels: torch.Tensor, folds: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(train, held_out)`` index tensors of each stratified fold."""
    counts = torch.bincount(labels)
    smallest = int(counts[counts > 0].min())
    if smallest < folds:
        raise UserError(f"folds={folds} but a class has only {smallest} training sample(s); accepted: folds <= "
                        "the smallest class's count")
    from sklearn.model_selection import StratifiedKFold  # (scikit-learn takes 2 s to import: only when used)

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(torch.as_tensor(a), torch.as_tensor(b)) for a, b in splitter.split(labels.numpy(), labels.numpy())]


def train_fold(images: torch.Tensor, labels: torch.Tensor, num_classes: int, *, build_model: Callable[[], nn.Module],
               build_method: Callable[[], Method], build_optimizer: Callable, epochs: int, batch_size: int, seed: int,
               amp_dtype: Any = None) -> nn.Module:
    """A fresh model trained with a fresh method on ``images`` (uint8, on the device)."""
    torch.manual_seed(seed)
    model, method = build_model().to(images.device), build_method()
    with validate.config_node("method"):  # the run's method: its refusals name method.<argument>
        method.plan(epochs)
        method.attach_model(build_model)
        method.setup(labels, num_classes)
    method.to(images.device)
    optimizer = build_optimizer([*model.parameters(), *method.parameters()])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    loader = DeviceLoader(images, labels, batch_size, shuffle=True, seed=seed)
    for epoch in range(epochs):
        method.before_epoch(epoch, model, lambda net: predict_images(net, images, 1024, amp_dtype)[:, :num_classes])
        train_one_epoch(model, method, loader, optimizer, epoch, EpochStats(images.device), amp_dtype)
        scheduler.step()
    return model.eval()


def out_of_sample_probabilities(images: torch.Tensor, labels: torch.Tensor, num_classes: int, *, folds: int,
                                seed: int, **train: Any) -> CrossValidated:
    """Each sample's softmax probabilities from a model trained on the other folds
    (``train``: the keyword arguments of :func:`train_fold` but ``seed``)."""
    folds = validate.number("folds", folds, lo=2, integer=True)
    device = images.device
    probs = torch.zeros(len(labels), num_classes, dtype=torch.float64)
    fold_of = torch.full((len(labels),), -1, dtype=torch.long)
    for k, (fit, held_out) in enumerate(fold_split(labels.cpu(), folds, seed)):
        log.info("cross-validation: fold %d/%d, training on %d samples", k + 1, folds, len(fit))
        model = train_fold(images[fit.to(device)], labels[fit.to(device)], num_classes, seed=seed + k, **train)
        logits = predict_images(model, images[held_out.to(device)], 1024, train.get("amp_dtype"))[:, :num_classes]
        probs[held_out] = logits.double().softmax(dim=1).cpu()
        fold_of[held_out] = k
    return CrossValidated(probs, fold_of)


def cross_validate_run(run: Any, *, folds: int, epochs: int | None, seed: int, amp_dtype: Any = None) -> CrossValidated:
    """:func:`out_of_sample_probabilities` for a restored run (``sat.tasks.restore``):
    its noisy training split, architecture, method, optimizer and batch size;
    ``epochs`` (null: the run's own)."""
    config, nd = run.config, run.data
    trainer = config.get("trainer") or {}
    epochs = validate.positive_int("cv_epochs", epochs if epochs is not None else trainer.get("epochs"))
    with validate.config_node(""):  # the checkpoint's own setting, named from its config's root
        batch_size = validate.positive_int("trainer.batch_size", trainer.get("batch_size"))

    def build_method() -> Method:
        return run.policy.build(config.get("method"), "method", "method")

    return out_of_sample_probabilities(
        nd.train.images.to(run.device), nd.train.labels.to(run.device), nd.data.num_classes, folds=folds, seed=seed,
        build_model=run.build_model, build_method=build_method, build_optimizer=optimizer_builder(config.get("optimizer")),
        epochs=epochs, batch_size=batch_size, amp_dtype=amp_dtype)
