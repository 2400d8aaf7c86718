"""The interface every training method implements."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from sat.config import trust
from sat.errors import UserError
from sat.parallel.batch import WHOLE_BATCH, GlobalBatch


class Method(nn.Module):
    """A training objective, possibly with per-sample state.

    Per-sample state (e.g. SAT's soft targets) lives in buffers, so it moves with
    ``.to(device)`` and is saved by ``state_dict()``. Call :meth:`setup` with the
    training labels before the first step (and before ``load_state_dict``).
    """

    # Outputs the model needs beyond one per class (selective classification's "abstain").
    extra_outputs: int = 0
    # Whether it trains on images without labels (label -1, STL-10's unlabeled split): only
    # a method that never reads a training label for its loss can.
    takes_unlabeled: bool = False
    # What starts at the method's phase start, for the refusal of a run that never gets there
    # ("SAT would never start"); see phase_starts.
    later_phase: str = "the method's later phase"
    # The global batch this process's batch is part of: per-sample state is updated
    # from ``global_batch.gather(index, ...)`` and batch-level quantities (SAT's weight
    # normalisation) use the whole batch, so that under DDP every process keeps the same
    # state and computes what a single process would. The identity in one process.
    global_batch: GlobalBatch = WHOLE_BATCH

    def use_global_batch(self, batch: GlobalBatch) -> None:
        """Called under DDP before training; reaches the methods inside this one (TRADES' natural loss)."""
        for module in self.modules():
            if isinstance(module, Method):
                module.global_batch = batch

    def networks(self) -> list[nn.Module]:
        """Networks of the method's own that train with the model (co-teaching's peer):
        under DDP they are wrapped with the model, so their gradients are averaged too.
        Default: none."""
        return []

    def parameter_groups(self, model: nn.Module) -> list[dict]:
        """Parameters (the model's or the method's own networks') that train with settings of
        their own, as optimizer parameter groups: ``[{"params": [...], "lr": 0.1,
        "weight_decay": 0.0, "name": "probe"}]`` (the self-supervised methods' online probe).
        Every other parameter trains with the optimizer's settings. Default: none."""
        return []

    def setup(self, labels: torch.Tensor, num_classes: int) -> None:
        """Allocate per-sample state for ``labels`` (on their device). Default: none."""

    def schedule(self, epochs: int) -> None:
        """Called once the run's length is known, before training (through :meth:`plan`):
        values derived from it (an EMA schedule, a start capped at a fraction of the run).
        Default: nothing."""

    # --- phases: when the method's behaviour changes ---------------------------------------

    def phase_starts(self) -> dict[str, int]:
        """The first epoch (0-based) of each later phase of the method, keyed by the argument
        that sets it: ``{"start_epoch": 60}`` (SAT's soft targets), ``{"pretrain": 150}``,
        ``{"natural.start_epoch": 70}`` (an argument of a part). Empty for a method that
        does the same from its first step (the default). Read after :meth:`schedule`: a run
        that never reaches a start is refused, and ``trainer.phases_by`` (``debug=fast``)
        moves every start forward (:meth:`plan`)."""
        return {}

    def start_phases_by(self, epoch: int) -> dict[str, tuple[int, int]]:
        """Move every phase that starts after ``epoch`` to start there (a smoke run that
        reaches all of them); returns ``{key: (start, moved start)}``. A key names the
        attribute that holds the start (``natural.start_epoch``: ``self.natural.start_epoch``)."""
        moved = {}
        for key, start in self.phase_starts().items():
            if start > epoch:
                *path, name = key.split(".")
                setattr(functools.reduce(getattr, path, self), name, epoch)
                moved[key] = (start, epoch)
        return moved

    def phase_never_starts(self, key: str, start: int, epochs: int) -> UserError:
        """The refusal of a run of ``epochs`` epochs that ends before phase ``key`` starts."""
        return UserError(key=key, value=start, problem=f">= trainer.epochs={epochs}, so {self.later_phase} would "
                         "never start", accepted=f"{{key}} < {epochs} (or more trainer.epochs)")

    def plan(self, epochs: int, phases_by: int | None = None) -> dict[str, tuple[int, int]]:
        """What the task calls once the run's length is known: :meth:`schedule`, then (with
        ``phases_by``, ``debug=fast``'s 1) every later phase moved to start by that epoch,
        then the refusal of a phase the run never reaches (SAT never silently plain CE).
        Returns the starts moved."""
        self.schedule(epochs)
        moved = self.start_phases_by(phases_by) if phases_by is not None else {}
        for key, start in self.phase_starts().items():
            if start >= epochs:
                raise self.phase_never_starts(key, start, epochs)
        return moved

    def attach_model(self, build: Callable[[], nn.Module]) -> None:
        """Called with the model's builder before training, for methods that train a
        network of their own (co-teaching's peer). Default: nothing."""

    def before_epoch(self, epoch: int, model: nn.Module, predict: Callable[[nn.Module], torch.Tensor]
                     ) -> dict[str, float]:
        """Called before epoch ``epoch`` (0-based) starts from its first step (not when a
        preempted epoch is continued: what this computed is method state, in checkpoints).
        ``predict(network)`` returns ``network``'s float32 logits over the whole training
        split in index order, in eval mode and without augmentation (DivideMix's per-sample
        losses, loss correction's transition estimate). Returns metrics of the method's own
        to log with the epoch. Default: nothing."""
        return {}

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> dict[str, float]:
        """Called after each epoch (``epoch`` = epochs completed) with its metrics;
        returns metrics of the method's own to log. Default: none."""
        return {}

    def representation_metrics(self, model: nn.Module, train, test) -> dict[str, float]:
        """Called after each evaluation with loaders over the training and test splits (in
        order, no augmentation, labels as given): metrics of the learnt representation
        (self-supervised methods: kNN accuracy, collapse diagnostics). Default: none."""
        return {}

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
        """Loss of a batch given its logits, labels and dataset indices."""
        raise NotImplementedError

    def forward(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step's loss; returns ``(loss, logits on the clean batch)``.

        ``model`` is in train mode. Methods that need more than the clean forward pass
        (adversarial training) override this.
        """
        logits = model(x)
        return self.loss(logits, y, index, epoch), logits

    def soft_labels(self) -> torch.Tensor | None:
        """The per-sample soft targets, if the method keeps them."""
        return None

    def hparams(self) -> dict[str, float | int | str | bool]:
        """The values this method actually uses (after any derivation), for logging: the
        run's TensorBoard hparams, ``summary.json``'s ``method`` and the end-of-run table."""
        return {}

    def headline(self) -> dict[str, str]:
        """The metrics this method is judged by, ``{metric: label}``, each a fraction (shown
        in %): the end-of-run table's rows and ``summary.json``'s ``headline``. Default:
        the test accuracy and, for a method with soft labels, the share of wrong labels
        they recover (where the true labels are known)."""
        out = {"test/acc": "test acc"}
        if self.soft_labels() is not None:
            out["sat/label_recovery"] = "label recovery"
        return out


trust.kind_base("method", Method)


class PeerMethod(Method):
    """A method that trains a second network of the model's architecture beside it, the
    *peer* (co-teaching, DivideMix, ELR+). The peer is a submodule: it moves, is saved and
    resumed with the method's state, and under DDP is wrapped with the model."""

    def __init__(self) -> None:
        super().__init__()
        self.peer: nn.Module | None = None

    def attach_model(self, build: Callable[[], nn.Module]) -> None:
        """Build the peer, a fresh, independently initialised copy of the model's
        architecture. Call before ``.to(device)``, building the optimizer and loading a
        checkpoint."""
        self.peer = build()

    def networks(self) -> list[nn.Module]:
        return [self.peer] if self.peer is not None else []
