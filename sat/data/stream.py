"""Reading a file split's images, for datasets larger than device memory.

:class:`FileBatches` is the batch source of :class:`sat.data.loader.Loader` for a
:class:`~sat.data.splits.FileSplit`: DataLoader workers read, decode and bring each
image to the split's one view (shorter side resized, centre crop), one batch per
request, into pinned memory; on CUDA, JPEGs can instead be decoded on the GPU (nvJPEG)
in the main process. The view is deterministic, so neither the number of workers nor
the loader (``loader.kind=device`` decodes the same view once) changes what a model
sees; the training augmentation is the ``augment`` group's, on the device.

torchvision is imported here, on first use, not when ``sat`` is imported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from sat.config import validate
from sat.data.image_checks import check_image_header, header_bytes
from sat.errors import UserError

if TYPE_CHECKING:  # the splits make their loaders from this module: types only
    from sat.data.splits import FileReading, FileSplit, StreamSettings

DECODERS = ("auto", "cpu", "cuda")
_JPEG_MAGIC = (0xFF, 0xD8)


MAX_PIXELS = 178_956_970  # PIL's decompression-bomb limit: a larger image is refused from its header
FORMATS = ("png", "jpeg", "gif", "webp")  # what torchvision decodes (BMP: convert it)


def decode_rgb(data: torch.Tensor, where: str) -> torch.Tensor:
    """Encoded bytes -> uint8 RGB (3, H, W) on the CPU: the header checked first (size,
    format: a decompression bomb is refused before it is decoded), grey and CMYK
    converted, 16-bit images scaled to 8 bits."""
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2.functional import to_dtype

    check_image_header(header_bytes(data.numpy()), where, MAX_PIXELS, formats=FORMATS)
    try:
        image = decode_image(data, mode=ImageReadMode.RGB)
    except RuntimeError as e:
        raise UserError(f"image {where} could not be decoded ({str(e).splitlines()[0]}); accepted: whole "
                        f"{', '.join(FORMATS)} files") from None
    image = image[0] if image.dim() == 4 else image  # an animated GIF: its first frame
    return image if image.dtype == torch.uint8 else to_dtype(image, torch.uint8, scale=True)


@dataclass(frozen=True)
class ReadFailure:
    """What a reader worker answers for a batch it cannot read: the one-line reason,
    raised in the main process (an exception raised in a worker comes back as a
    traceback wrapped in another message)."""

    message: str


def _checked(item: Any) -> Any:
    if isinstance(item, ReadFailure):
        raise UserError(item.message)
    return item


def view(image: torch.Tensor, reading: FileReading) -> torch.Tensor:
    """The one view of a decoded image: shorter side resized to ``reading.resize``, then
    a centre crop of ``reading.image_size`` (on any device)."""
    import torchvision.transforms.v2.functional as TF

    if min(image.shape[-2:]) != reading.resize:
        image = TF.resize(image, reading.resize, antialias=True)
    return TF.center_crop(image, [reading.image_size, reading.image_size])


def _read(path: str) -> torch.Tensor:
    from torchvision.io import read_file

    try:
        return read_file(path)
    except RuntimeError as e:
        raise UserError(f"image {path} could not be read ({str(e).splitlines()[0]}); accepted: the dataset's files "
                        "as they were listed when the run started") from None


def _own_process_group(_worker: int) -> None:
    """A worker leaves preemption to the main process: in a process group of its own, a
    signal sent to the job's group (Slurm, ``kill -- -PID``, Ctrl-C) does not kill it
    mid-batch, while the main process can still stop it. (A worker whose main process
    dies notices and exits: DataLoader's watchdog.)"""
    os.setpgid(0, 0)


class _BatchReader(Dataset):
    """A map-style dataset whose items are whole batches: a request is a list of split
    positions, the answer their images: decoded to the view as one uint8 (B, 3, S, S)
    tensor (``decode=True``), or the encoded files (decoded on the GPU later)."""

    def __init__(self, split: FileSplit, decode: bool) -> None:
        self.root, self.files, self.reading, self.decode = str(split.root), split.files, split.reading, decode

    def __len__(self) -> int:
        return len(self.files)

    def path(self, position: int) -> str:
        return f"{self.root}/{self.files[position].decode()}"

    def __getitem__(self, positions: list[int]) -> torch.Tensor | list[torch.Tensor] | ReadFailure:
        try:
            encoded = [_read(self.path(p)) for p in positions]
            if not self.decode:
                return encoded
            size = self.reading.image_size
            if not positions:
                return torch.empty(0, 3, size, size, dtype=torch.uint8)
            return torch.stack([view(decode_rgb(data, self.path(p)), self.reading)
                                for data, p in zip(encoded, positions)])
        except UserError as e:
            return ReadFailure(str(e))


class _Requests(Sampler):
    """The current epoch's batch requests. The DataLoader iterates its sampler in the
    main process, so persistent workers see each new epoch's order."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def cuda_jpeg_available(device: torch.device) -> bool:
    """Whether torchvision can decode JPEGs on ``device`` (a CUDA build with nvJPEG)."""
    if device.type != "cuda":
        return False
    from torchvision.io import decode_jpeg, encode_jpeg

    try:
        decode_jpeg(encode_jpeg(torch.zeros(3, 8, 8, dtype=torch.uint8)), device=device)
        return True
    except (RuntimeError, TypeError):
        return False


def check_streaming(settings: StreamSettings, device: torch.device) -> int:
    """The settings' worker count, after refusing what cannot run here (refusals name
    the settings' fields: ``decode=``)."""
    workers = settings.workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise UserError(key="num_workers", value=settings.num_workers, problem="is not supported",
                        accepted="an integer >= 0, auto")
    validate.choice("decode", settings.decode, DECODERS)
    if settings.decode == "cuda" and not cuda_jpeg_available(device):
        raise UserError(key="decode", value="cuda", problem=f"but JPEG decoding on {device} is not available here",
                        accepted="cpu, auto")
    return workers


class FileBatches:
    """The batch source of a file split (see the module doc)."""

    whole_batches = False  # reading a whole global batch on every process would defeat sharding

    def __init__(self, split: FileSplit, device: torch.device | str) -> None:
        self.device, self.split, streaming = torch.device(device), split, split.streaming
        workers = check_streaming(streaming, self.device)
        self.gpu_decode = streaming.decode == "cuda" or (streaming.decode == "auto" and
                                                          cuda_jpeg_available(self.device))
        self._reader = _BatchReader(split, decode=not self.gpu_decode)
        self._requests = _Requests()
        self._loader = DataLoader(
            self._reader, batch_size=None, sampler=self._requests, num_workers=workers,
            pin_memory=self.device.type == "cuda", prefetch_factor=streaming.prefetch_factor if workers > 0 else None,
            persistent_workers=streaming.persistent_workers and workers > 0,
            worker_init_fn=_own_process_group if workers > 0 else None,
            # A private generator: DataLoader otherwise draws its worker base seed from the
            # global RNG at every epoch, which would shift model init and dropout.
            generator=torch.Generator(),
        )

    def batches(self, requests: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        self._requests.batches = [r.tolist() for r in requests]
        for images, request in zip(self._loader, self._requests.batches):
            images = _checked(images)
            if self.gpu_decode:
                yield self._decode_on_device(images, request)
            else:
                yield images.to(self.device, non_blocking=True)

    def close(self) -> None:
        """Stop persistent workers now (at exit they would be stopped anyway)."""
        iterator = getattr(self._loader, "_iterator", None)  # the DataLoader's persistent worker pool, if any
        if iterator is not None:
            iterator._shutdown_workers()
            self._loader._iterator = None

    def _decode_on_device(self, encoded: list[torch.Tensor], positions: list[int]) -> torch.Tensor:
        """nvJPEG for the batch's JPEGs (one call), the CPU for any other format; then the view on the device."""
        from torchvision.io import ImageReadMode, decode_jpeg

        for data, p in zip(encoded, positions):
            check_image_header(header_bytes(data.numpy()), self._reader.path(p), MAX_PIXELS, formats=FORMATS)
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
            out.append(view(image, self.split.reading))
        size = self.split.reading.image_size
        return torch.stack(out) if out else torch.empty(0, 3, size, size, dtype=torch.uint8, device=self.device)


def decode_all(split: FileSplit, batch_size: int = 256) -> torch.Tensor:
    """Every image of ``split`` in its view, in order, as one uint8 (N, 3, S, S) CPU
    tensor: a file split small enough for the device (``loader.kind=device``)."""
    reading = split.reading
    workers = check_streaming(split.streaming, torch.device("cpu"))
    requests = _Requests()
    requests.batches = [list(range(s, min(s + batch_size, len(split)))) for s in range(0, len(split), batch_size)]
    loader = DataLoader(_BatchReader(split, decode=True), batch_size=None, sampler=requests,
                        num_workers=workers, generator=torch.Generator(),
                        worker_init_fn=_own_process_group if workers > 0 else None)
    images = [_checked(batch) for batch in loader]
    if not images:
        return torch.empty(0, 3, reading.image_size, reading.image_size, dtype=torch.uint8)
    return torch.cat(images)
