"""Throughput of the streaming loader: images/s of the loader alone and of training
ResNet-50 from it, for each number of DataLoader workers, on a generated folder of
JPEG files (the files' view decoded in the workers, then random-resized crop + flip on
the device, as for Clothing1M).

    python benchmarks/stream_loader.py                          # CPU, small: under a minute
    python benchmarks/stream_loader.py --device cuda --images 8192 --image-size 320 \
        --crop 224 --width 64 --batch-size 256 --workers 0,4,8,16

A row per worker count: the loader alone (decoding, augmenting, copying to the
device) must outrun the training step, else the GPU waits on the disk path.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.io import encode_jpeg

from sat.data.augment import RandomResizedCrop
from sat.data.lists import read_split
from sat.data.loader import Loader
from sat.data.splits import FileReading, StreamSettings
from sat.data.stream import FileBatches, cuda_jpeg_available
from sat.engine import autocast
from sat.models import with_normalization
from sat.models.resnet50 import ResNet50

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_folder(root: Path, n: int, size: int, classes: int) -> Path:
    """``n`` JPEGs of about ``size`` pixels (aspect ratios vary, as web images do) and
    a ``train.txt`` label list."""
    g = torch.Generator().manual_seed(0)
    lines = []
    for i in range(n):
        h, w = size, size * (3 + i % 3) // 4
        # Smooth random images compress like photos, not like white noise.
        low = torch.rand(3, h // 8 + 1, w // 8 + 1, generator=g)
        image = F.interpolate(low[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        name = f"images/{i % 16:02d}/{i:06d}.jpg"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(bytes(encode_jpeg((image * 255).to(torch.uint8), quality=90).numpy()))
        lines.append(f"{name} {i % classes}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_rate(loader: Loader, device: torch.device, epochs: int) -> float:
    """Images/s of the loader alone: the best of ``epochs`` epochs after a warm-up one
    (the best, because other processes on a shared machine only ever slow it down)."""
    rates = []
    for epoch in range(epochs + 1):
        sync(device)
        t0, seen = time.perf_counter(), 0
        for x, _, _ in loader:
            seen += len(x)
        sync(device)
        if epoch > 0:
            rates.append(seen / (time.perf_counter() - t0))
    return max(rates)


def train_rate(loader: Loader, model: torch.nn.Module, device: torch.device, cuda: bool, epochs: int) -> float:
    """Images/s of SGD steps fed by the loader: the best of ``epochs`` epochs after a warm-up one."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    amp = torch.bfloat16 if cuda else None
    rates = []
    for epoch in range(epochs + 1):
        sync(device)
        t0, seen = time.perf_counter(), 0
        for x, y, _ in loader:
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, amp):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(x)
        sync(device)
        if epoch > 0:
            rates.append(seen / (time.perf_counter() - t0))
    return max(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--folder", default=None, help="reuse (or create) the generated folder here; default: a temp dir")
    ap.add_argument("--images", type=int, default=128, help="files in the generated folder")
    ap.add_argument("--image-size", type=int, default=72, help="stored image height in pixels")
    ap.add_argument("--crop", type=int, default=56, help="training crop (the model's input size)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", default="0,2", help="comma-separated DataLoader worker counts")
    ap.add_argument("--width", type=int, default=8, help="ResNet-50 base width (64 = standard)")
    ap.add_argument("--decode", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per measurement (the best is shown)")
    ap.add_argument("--no-train", action="store_true", help="time the loader alone")
    args = ap.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.folder or tmp)
        if not (root / "train.txt").is_file():
            root.mkdir(parents=True, exist_ok=True)
            write_folder(root, args.images, args.image_size, classes=14)
        split = read_split(root, {"list": "train.txt"}, num_classes=14)
        gpu_decode = args.decode == "cuda" or (args.decode == "auto" and cuda_jpeg_available(device))
        print(f"device={device} images={len(split)} stored~{args.image_size}px crop={args.crop} batch={args.batch_size} "
              f"decode={'cuda' if gpu_decode else 'cpu'} ResNet-50 width={args.width} threads={torch.get_num_threads()}")
        print(f"{'workers':>7} {'loader img/s':>13} {'train img/s':>12}   (best of {args.epochs} epochs each)")
        def fresh_model() -> torch.nn.Module:
            torch.manual_seed(0)
            model = with_normalization(ResNet50(14, (3, args.crop, args.crop), width=args.width), MEAN, STD)
            return model.to(device, memory_format=torch.channels_last if cuda else torch.contiguous_format)

        def make_loader(workers: int) -> Loader:
            streaming = StreamSettings(num_workers=workers, decode=args.decode, persistent_workers=workers > 0)
            view = split.with_reading(FileReading(args.crop, args.crop)).streamed(streaming)
            return Loader(FileBatches(view, device), split.labels, args.batch_size,
                          shuffle=True, augment=RandomResizedCrop(), drop_last=True)

        if not args.no_train:  # the process's first training steps are slow (kernel selection, allocator): not timed
            train_rate(make_loader(0), fresh_model(), device, cuda, epochs=1)
        for workers in (int(w) for w in args.workers.split(",")):
            loader = make_loader(workers)
            alone = loader_rate(loader, device, args.epochs)
            trained = float("nan")
            if not args.no_train:
                trained = train_rate(loader, fresh_model(), device, cuda, args.epochs)
            print(f"{workers:>7} {alone:>13.1f} {trained:>12.1f}")


if __name__ == "__main__":
    main()
