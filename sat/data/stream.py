"""A data loader that streams images from disk, for datasets larger than device memory.

Same contract as :class:`sat.data.loader.DeviceLoader`: iterating yields
``(x, y, index)`` with ``x`` float in [0, 1] (N, C, H, W) on the training device, ``y``
int64 labels and ``index`` the samples' positions in the split (what per-sample method
state is indexed by); ``len()`` is the number of batches; ``state_dict()`` /
``load_state_dict()`` resume exactly, between epochs or mid-epoch (the state then
holds the epoch's order and the batches handed out, as DeviceLoader's does; ``position``
counts them).

Randomness:
- the epoch's order is ``torch.randperm(n, generator=g)`` with ``g`` a generator on the
  training device seeded by ``seed`` and used for nothing else, so for the same seed,
  device and number of samples the order is the permutation DeviceLoader draws (for
  its first epoch always; for every epoch when DeviceLoader has no augmentation, which
  draws from the same generator);
- each sample's augmentation comes from (seed, epoch, index) alone
  (:func:`sat.data.transforms.sample_seed`), so the number of workers does not change
  results.

Images are read (and, on the CPU path, decoded and transformed) in DataLoader workers,
one batch per request, into pinned memory; on CUDA, JPEGs can instead be decoded on
the GPU (nvJPEG) in the main process.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.io import ImageReadMode, decode_image, decode_jpeg, encode_jpeg, read_file

from sat.data.folder import FileSplit, FolderDataset
from sat.data.transforms import eval_transform, sample_seed, train_transform
from sat.errors import UserError

DECODERS = ("auto", "cpu", "cuda")
_JPEG_MAGIC = (0xFF, 0xD8)


class SampleTransform(Protocol):
    """uint8 (C, H, W) image and a seeded ``random.Random`` -> uint8 (C, S, S) image."""

    random: bool

    def __call__(self, image: torch.Tensor, rng: random.Random) -> torch.Tensor: ...


def decode_rgb(data: torch.Tensor, where: str) -> torch.Tensor:
    """Encoded bytes -> uint8 RGB (3, H, W) on the CPU (grey and CMYK converted)."""
    try:
        image = decode_image(data, mode=ImageReadMode.RGB)
    except RuntimeError as e:
        raise RuntimeError(f"could not decode image {where}: {e}") from None
    return image[0] if image.dim() == 4 else image  # an animated GIF: its first frame


def _read(path: str) -> torch.Tensor:
    try:
        return read_file(path)
    except RuntimeError as e:
        raise FileNotFoundError(f"could not read image {path}: {e}") from None


class _BatchReader(Dataset):
    """A map-style dataset whose items are whole batches: a request is
    ``(seed, epoch, positions)``, the answer ``(images, positions)``. The seed travels
    with each request: persistent workers hold a copy of this object made when they
    started, before a resumed run may have loaded its state.

    With ``decode=True`` images are decoded and transformed here (in the worker) into
    one uint8 (B, C, S, S) tensor; otherwise the answer is the list of encoded files.
    """

    def __init__(self, split: FileSplit, transform: SampleTransform, decode: bool) -> None:
        self.root, self.files = str(split.root), split.files
        self.transform, self.decode = transform, decode

    def __len__(self) -> int:
        return len(self.files)

    def path(self, position: int) -> str:
        return f"{self.root}/{self.files[position].decode()}"

    def __getitem__(self, request: tuple[int, int, list[int]]) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor]:
        seed, epoch, positions = request
        encoded = [_read(self.path(p)) for p in positions]
        if not self.decode:
            return encoded, torch.tensor(positions, dtype=torch.int64)
        images = [
            self.transform(decode_rgb(data, self.path(p)), random.Random(sample_seed(seed, epoch, p)))
            for data, p in zip(encoded, positions)
        ]
        return torch.stack(images), torch.tensor(positions, dtype=torch.int64)


class _Requests(Sampler):
    """The current epoch's batch requests. The DataLoader iterates its sampler in the
    main process, so persistent workers see each new epoch's order."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int, list[int]]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def cuda_jpeg_available(device: torch.device) -> bool:
    """Whether torchvision can decode JPEGs on ``device`` (a CUDA build with nvJPEG)."""
    if device.type != "cuda":
        return False
    try:
        probe = encode_jpeg(torch.zeros(3, 8, 8, dtype=torch.uint8))
        decode_jpeg(probe, device=device)
        return True
    except (RuntimeError, TypeError):
        return False


class StreamLoader:
    """Yields ``(x, y, index)`` batches of images read from disk (see the module doc).

    ``labels`` replaces the split's labels (label noise drawn by the run);
    ``transform`` is the per-sample transform (training augmentation or evaluation
    view, :mod:`sat.data.transforms`); ``decode`` is ``cpu`` (in the workers), ``cuda``
    (JPEGs on the GPU, others on the CPU) or ``auto`` (``cuda`` where available).
    """

    def __init__(
        self,
        split: FileSplit,
        transform: SampleTransform,
        batch_size: int,
        *,
        labels: torch.Tensor | None = None,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        device: torch.device | str = "cpu",
        num_workers: int = 0,
        pin_memory: bool | None = None,
        prefetch_factor: int = 2,
        persistent_workers: bool = False,
        decode: str = "auto",
    ) -> None:
        self.device = torch.device(device)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"trainer.batch_size={batch_size!r} is not supported; accepted: a positive integer")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise UserError(f"dataset.num_workers={num_workers!r} is not supported; accepted: an integer >= 0")
        if decode not in DECODERS:
            raise UserError(f"dataset.decode={decode!r} is not supported; accepted: {', '.join(DECODERS)}")
        if decode == "cuda" and not cuda_jpeg_available(self.device):
            raise UserError(f"dataset.decode=cuda but JPEG decoding on {self.device} is not available here; "
                            f"accepted: cpu, auto")
        labels = split.labels if labels is None else torch.as_tensor(labels, dtype=torch.int64)
        if len(labels) != len(split):
            raise UserError(f"got {len(labels)} labels for {len(split)} files of {split.source}; "
                            f"accepted: one label per file")
        self.split, self.transform = split, transform
        self.labels = labels.to(self.device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed = int(seed)
        self.epoch = 0  # epochs started (the one under way included)
        self._order: torch.Tensor | None = None  # this epoch's sample order, while an epoch is under way
        self._position = 0  # batches of it already handed out
        # Only the epoch order is drawn from this generator (on the training device, as
        # DeviceLoader's), so that order is the same permutation for the same seed.
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
        self.gpu_decode = decode == "cuda" or (decode == "auto" and cuda_jpeg_available(self.device))
        self._reader = _BatchReader(split, transform, decode=not self.gpu_decode)
        self._requests = _Requests()
        self._loader = DataLoader(
            self._reader, batch_size=None, sampler=self._requests, num_workers=num_workers,
            pin_memory=self.device.type == "cuda" if pin_memory is None else pin_memory,
            prefetch_factor=prefetch_factor if num_workers > 0 else None,
            persistent_workers=persistent_workers and num_workers > 0,
            # A private generator: DataLoader otherwise draws its worker base seed from the
            # global RNG at every epoch, which would shift model init and dropout.
            generator=torch.Generator(),
        )

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _draw_order(self) -> torch.Tensor:
        n = len(self.split)
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, device=self.device, generator=self.generator).cpu()

    @property
    def position(self) -> int:
        """Batches of the current epoch handed out so far (0 between epochs)."""
        return self._position if self._order is not None else 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if self._order is None:  # a new epoch (else: continue one stopped or restored mid-way)
            self._order, self._position = self._draw_order(), 0
            self.epoch += 1
        epoch = self.epoch - 1  # the epoch under way: it seeds the augmentation
        size = self.batch_size
        self._requests.batches = [(self.seed, epoch, self._order[s : s + size].tolist())
                                  for s in range(self._position * size, len(self) * size, size)]
        for images, positions in self._loader:
            if self.gpu_decode:
                x = self._decode_on_device(images, positions.tolist(), epoch)
            else:
                x = images.to(self.device, non_blocking=True)
            index = positions.to(self.device, non_blocking=True)
            self._position += 1  # before the yield: a state saved after this batch skips it
            yield x.float().div_(255), self.labels[index], index
        self._order = None

    def _decode_on_device(self, encoded: list[torch.Tensor], positions: list[int], epoch: int) -> torch.Tensor:
        """nvJPEG for the batch's JPEGs (one call), the CPU for any other format; then
        each sample's transform on the device."""
        jpeg = [i for i, data in enumerate(encoded) if data.numel() > 2 and tuple(data[:2].tolist()) == _JPEG_MAGIC]
        decoded: list[torch.Tensor | None] = [None] * len(encoded)
        if jpeg:
            try:
                for i, image in zip(jpeg, decode_jpeg([encoded[i] for i in jpeg], mode=ImageReadMode.RGB,
                                                      device=self.device)):
                    decoded[i] = image
            except RuntimeError:  # e.g. a CMYK or progressive file nvJPEG rejects: the CPU decodes the batch
                pass
        out = []
        for i, p in enumerate(positions):
            image = decoded[i]
            if image is None:
                image = decode_rgb(encoded[i], self._reader.path(p)).to(self.device, non_blocking=True)
            out.append(self.transform(image, random.Random(sample_seed(self.seed, epoch, p))))
        return torch.stack(out)

    def state_dict(self) -> dict:
        mid_epoch = self._order is not None
        return {"generator": self.generator.get_state(), "epoch": self.epoch, "seed": self.seed,
                "num_samples": len(self.split), "order": self._order.clone() if mid_epoch else None,
                "position": self._position if mid_epoch else 0}

    def load_state_dict(self, state: dict) -> None:
        if state["num_samples"] != len(self.split):
            raise UserError(f"resume: the loader state is for {state['num_samples']} samples but the split has "
                            f"{len(self.split)}; accepted: the run's own dataset")
        self.generator.set_state(state["generator"])
        self.epoch, self.seed = int(state["epoch"]), int(state["seed"])
        order = state.get("order")
        self._order = None if order is None else torch.as_tensor(order, dtype=torch.int64).cpu()
        self._position = int(state.get("position", 0))


def make_stream_loader(data: FolderDataset, split: FileSplit, batch_size: int, *, train: bool,
                       labels: torch.Tensor | None = None, seed: int = 0, device: torch.device | str = "cpu") -> StreamLoader:
    """The loader a run needs for one split of a folder dataset: shuffled with the
    dataset's training augmentation (``train=True``), or in list order with the
    evaluation view; workers and decoding as the dataset config says."""
    transform = (train_transform(data.train_augment, data.image_size, data.resize, data.scale) if train
                 else eval_transform(data.image_size, data.resize))
    return StreamLoader(split, transform, batch_size, labels=labels, shuffle=train, seed=seed, device=device,
                        num_workers=data.num_workers, persistent_workers=data.persistent_workers,
                        prefetch_factor=data.prefetch_factor, decode=data.decode)


def decode_split(split: FileSplit, transform: SampleTransform, batch_size: int = 256,
                 num_workers: int = 0) -> torch.Tensor:
    """Every image of ``split`` through a deterministic ``transform`` (the evaluation
    view), in order, as one uint8 (N, C, S, S) CPU tensor: a folder dataset small
    enough for DeviceLoader (``dataset.loader=device``)."""
    if transform.random:
        raise ValueError(f"decode_split needs a deterministic transform, got {transform!r}")
    requests = _Requests()
    requests.batches = [(0, 0, list(range(s, min(s + batch_size, len(split))))) for s in range(0, len(split), batch_size)]
    loader = DataLoader(_BatchReader(split, transform, decode=True), batch_size=None, sampler=requests,
                        num_workers=num_workers, generator=torch.Generator())
    images = [batch for batch, _ in loader]
    if not images:
        size = getattr(transform, "size", 1)
        return torch.empty(0, 3, size, size, dtype=torch.uint8)
    return torch.cat(images)


__all__ = ["SampleTransform", "StreamLoader", "cuda_jpeg_available", "decode_rgb", "decode_split", "make_stream_loader"]

