"""Checks a training run passes once its data is known, before its first epoch: each a
one-line refusal instead of a crash after an epoch's work, or a run that trains to the
end on something other than it says."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from sat.errors import UserError


def _smallest_shard(num_samples: int, batch_size: int, world_size: int) -> int:
    """The fewest samples one process gets in a batch of an epoch (the last one is short)."""
    last = num_samples % batch_size
    return min([batch_size // world_size, *([last // world_size] if last else [])])


def check_smallest_batch(networks: Iterable[tuple[str, nn.Module]], num_samples: int, batch_size: int,
                         world_size: int) -> None:
    """BatchNorm1d (an SSL method's projector, a model's head) cannot train on one sample:
    refuse, before epoch 1, a batch size that leaves a process a batch of one (a last
    batch of 7 samples would crash at the end of the epoch, its work lost)."""
    owner = next((name for name, net in networks for m in net.modules() if isinstance(m, nn.BatchNorm1d)), None)
    if owner is None or num_samples == 0 or _smallest_shard(num_samples, batch_size, world_size) >= 2:
        return
    fits = [b for b in range(2 * world_size, 2 * batch_size + 2 * world_size)
            if b % world_size == 0 and _smallest_shard(num_samples, b, world_size) >= 2]
    near = sorted(sorted(fits, key=lambda b: abs(b - batch_size))[:2]) if fits else []
    per = " per process" if world_size > 1 else ""
    raise UserError(f"trainer.batch_size={batch_size} leaves a batch of one sample{per} of the {num_samples} training "
                    f"samples, and BatchNorm1d (in {owner}) cannot train on one; accepted: a batch size whose every "
                    f"batch holds at least 2 samples{per}" + (f", e.g. {' or '.join(map(str, near))}" if near else ""))


def data_identity(data: Any) -> dict[str, Any]:
    """What the processes of a DDP run compare of their data (a ``TrainingData``)."""
    return {"train": data.data.identity(), "sizes": [len(s) if s is not None else 0 for s in (data.train, data.val,
                                                                                                  data.test)]}


def check_same_data(identities: list[Any]) -> None:
    """Every process of a DDP run reads the same training data: the identity its noise
    pattern keeps (dataset, sample count, hash of the labels) and its split sizes. Ranks
    that read different data folders (a per-node ``dataset.root``) would train to exit 0."""
    differ = [rank for rank, identity in enumerate(identities) if identity != identities[0]]
    if differ:
        def shown(identity: Any) -> str:
            d = identity.get("train") or {}
            return (f"{d.get('dataset')}: {d.get('num_samples')} training samples, labels hash "
                    f"{str(d.get('labels_sha256'))[:12]}; sizes {identity.get('sizes')}")

        raise UserError(f"process(es) {', '.join(map(str, differ))} read other training data than process 0 ("
                        f"{shown(identities[differ[0]])} vs {shown(identities[0])}); accepted: the same dataset on "
                        "every process (check each node's dataset.root / paths.data_dir)")
