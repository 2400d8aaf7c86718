"""Training under DistributedDataParallel: the step each process runs, SyncBatchNorm,
and the checks a DDP run's settings must pass.

What makes a DDP run compute what one process would with the same global batch:
the loader hands each process a contiguous shard of every global batch; methods keep
their per-sample state identical through ``Method.global_batch`` (gathers, not DDP's
buffer broadcast); and each process's loss, a mean over its shard, is scaled by the
shard's share of the global batch, so DDP's gradient average is the global batch's mean.
BatchNorm normalises over each shard unless it is converted to SyncBatchNorm.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sat.errors import UserError
from sat.methods.base import Method
from sat.parallel.batch import ShardedBatch
from sat.parallel.group import Distributed


class _Trained(nn.Module):
    """What DDP wraps: the networks that train (the model and any of the method's own,
    such as co-teaching's peer) with the method's step as ``forward``. The method is
    not a submodule: DDP would broadcast its per-sample buffers (soft targets, as large
    as the dataset) at every step; its gathers keep them identical instead."""

    def __init__(self, model: nn.Module, method: Method):
        super().__init__()
        self.model = model
        self.method_networks = nn.ModuleList(method.networks())
        object.__setattr__(self, "method", method)  # bypass nn.Module's registration, see above

    def forward(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, epoch: int):
        return self.method(self.model, x, y, index, epoch)


class DataParallelStep:
    """``step(x, y, index, epoch) -> (loss, logits)`` for ``train_one_epoch`` under DDP.

    The returned loss is this process's share: the mean over its shard times
    ``shard * world_size / global batch`` (1 when the batch splits evenly), so that the
    average DDP takes is the global batch's mean loss.
    """

    def __init__(self, model: nn.Module, method: Method, group: Distributed, batch: ShardedBatch):
        method.use_global_batch(batch)
        self.batch, self.world_size = batch, group.world_size
        cuda = group.device is not None and group.device.type == "cuda"
        # DDP's default also broadcasts rank 0's buffers (BatchNorm statistics) at each
        # forward, so eval-mode passes (TRADES' attack) see the same ones everywhere.
        self.module = DistributedDataParallel(_Trained(model, method), device_ids=[group.device.index] if cuda else None)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, epoch: int):
        loss, logits = self.module(x, y, index, epoch)
        n = len(y)
        return loss * (n * self.world_size / self.batch.total(n)), logits


def check_sync_batchnorm(device: torch.device) -> None:
    if device.type != "cuda":
        raise UserError("trainer.sync_batchnorm=true needs CUDA: PyTorch's SyncBatchNorm does not run on the CPU "
                        "(gloo); accepted: trainer.sync_batchnorm=false with device=cpu")


def convert_sync_batchnorm(modules: list[nn.Module], device: torch.device) -> int:
    """Replace BatchNorm layers by SyncBatchNorm in place (same parameters and buffers,
    so optimizer and checkpoints are unaffected); returns how many were converted."""
    check_sync_batchnorm(device)
    before = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for root in modules for m in root.modules())
    for root in modules:
        if isinstance(root, nn.modules.batchnorm._BatchNorm):
            raise ValueError("convert_sync_batchnorm: a BatchNorm layer as the root cannot be replaced in place")
        nn.SyncBatchNorm.convert_sync_batchnorm(root)
    return before


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm)
               for m in module.modules())


def check_batch_split(batch_size: int, world_size: int) -> None:
    """The global batch splits evenly over the processes (each gets batch_size / N)."""
    if batch_size % world_size:
        raise UserError(f"trainer.batch_size={batch_size} does not split over the {world_size} processes of this "
                        f"distributed run; accepted: a multiple of {world_size} (trainer.batch_size is the global batch)")


def check_last_batch(num_samples: int, batch_size: int, world_size: int) -> None:
    """Every process gets at least one sample of the epoch's last, short batch."""
    last = num_samples % batch_size
    if 0 < last < world_size:
        raise UserError(f"trainer.batch_size={batch_size} leaves a last batch of {last} of the {num_samples} training "
                        f"samples, fewer than the {world_size} processes; accepted: a batch size whose last batch is "
                        f"empty or has at least {world_size} samples")
