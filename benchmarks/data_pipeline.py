"""One training epoch on CIFAR-shaped data: our pipeline (uint8 data on the device,
batched crop+flip, bf16 autocast and channels-last on CUDA) against a reference-style
pipeline (torchvision PIL transforms + DataLoader + fp32), same model, same data, same
number of steps, in one run. Random images stand in for CIFAR (no download).

    python benchmarks/data_pipeline.py --device cpu --images 4096 --width 16
    python benchmarks/data_pipeline.py --device cuda --images 50000 --width 64
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sat.data.augment import CropFlip
from sat.data.loader import DeviceLoader
from sat.engine import autocast
from sat.models import ResNet, with_normalization

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class PILDataset(torch.utils.data.Dataset):
    """torchvision.datasets.CIFAR10's hot path: a PIL image per sample, then transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        import torchvision.transforms as T  # here: the timed job processes of gpu_bench.py never need it (~1.5 s)

        self.images, self.labels = images, labels
        self.transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                    T.Normalize(MEAN, STD)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reference_epoch(model, optimizer, loader, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - t0


def our_epoch(model, optimizer, loader, device, amp_dtype, channels_last) -> float:
    sync(device)
    t0 = time.perf_counter()
    for x, y, _ in loader:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp_dtype):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--width", type=int, default=16, help="ResNet-18 base width (64 = standard)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference pipeline")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per pipeline (after one warm-up epoch)")
    args = ap.parse_args()
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, args.images)

    def fresh_model():
        torch.manual_seed(0)
        model = with_normalization(ResNet(10, (3, 32, 32), depth=18, width=args.width), MEAN, STD).to(device)
        return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    cuda = device.type == "cuda"
    ref_loader = torch.utils.data.DataLoader(PILDataset(images, labels), batch_size=args.batch_size, shuffle=True,
                                             num_workers=args.workers, pin_memory=cuda, persistent_workers=args.workers > 0)
    our_loader = DeviceLoader(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device),
                              torch.from_numpy(labels).to(device), args.batch_size, shuffle=True, augment=CropFlip(4))
    ref_model, ref_opt = fresh_model()
    our_model, our_opt = fresh_model()
    if cuda:
        torch.backends.cudnn.benchmark = True
        our_model = our_model.to(memory_format=torch.channels_last)
    amp_dtype = torch.bfloat16 if cuda else None
    times = {"reference": [], "ours": []}
    for epoch in range(args.epochs + 1):  # epoch 0 warms up both; then interleaved
        t_ref = reference_epoch(ref_model, ref_opt, ref_loader, device)
        t_our = our_epoch(our_model, our_opt, our_loader, device, amp_dtype, cuda)
        if epoch > 0:
            times["reference"].append(t_ref)
            times["ours"].append(t_our)
    ref, ours = min(times["reference"]), min(times["ours"])
    print(f"device={device} images={args.images} batch={args.batch_size} ResNet-18 width={args.width} "
          f"threads={torch.get_num_threads()} workers={args.workers}")
    print(f"reference (PIL transforms + DataLoader + fp32) {ref:8.3f} s/epoch (best of {args.epochs})")
    print(f"ours (device-resident, batched aug{', bf16, channels-last' if cuda else ''}) {ours:8.3f} s/epoch")
    print(f"ratio ours/reference = {ours / ref:.3f}")


if __name__ == "__main__":
    main()
