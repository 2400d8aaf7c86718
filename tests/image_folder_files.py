"""Small image-folder datasets written in the tests: PNG and JPEG files of a few
pixels with label lists in the real benchmark layouts."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.io import encode_jpeg, encode_png


def write_image(path: Path, image: torch.Tensor) -> None:
    """uint8 (C, H, W) -> a PNG or JPEG file, by the path's extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = encode_png(image) if path.suffix == ".png" else encode_jpeg(image, quality=95)
    path.write_bytes(bytes(data.numpy()))


def random_image(g: torch.Generator, label: int, height: int, width: int) -> torch.Tensor:
    """A colour that depends on the label plus noise, so a model can learn it."""
    base = torch.tensor([60 + 60 * (label % 3), 60 + 40 * (label % 4), 200 - 50 * (label % 2)], dtype=torch.float32)
    noise = 30 * torch.randn(3, height, width, generator=g)
    return (base.view(3, 1, 1) + noise).clamp(0, 255).to(torch.uint8)


def write_list_dataset(root: Path, num_train: int = 24, num_test: int = 8, num_classes: int = 3,
                       seed: int = 0) -> Path:
    """``root/images/{train,test}/<i>.{png,jpg}`` (alternating formats, sizes 10-17 px)
    and ``root/train.txt`` / ``root/test.txt`` of ``relative/path label`` lines."""
    g = torch.Generator().manual_seed(seed)
    for split, n in (("train", num_train), ("test", num_test)):
        lines = []
        for i in range(n):
            label = int(torch.randint(num_classes, (1,), generator=g))
            name = f"images/{split}/{i:03d}.{'png' if i % 2 == 0 else 'jpg'}"
            write_image(root / name, random_image(g, label, 10 + i % 5, 12 + i % 6))
            lines.append(f"{name} {label}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def write_class_folders(root: Path, per_class: int = 8, test_per_class: int = 2, num_classes: int = 3,
                        size: int = 48, seed: int = 0) -> Path:
    """torchvision's ImageFolder layout: ``root/{train,test}/class<k>/<i>.png``."""
    g = torch.Generator().manual_seed(seed)
    for split, n in (("train", per_class), ("test", test_per_class)):
        for label in range(num_classes):
            for i in range(n):
                write_image(root / split / f"class{label}" / f"{i:03d}.png", random_image(g, label, size, size))
    return root
