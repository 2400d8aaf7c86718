"""Training images per second of the CPU presets through the framework's own path, against a plain PyTorch
loop over the same model with the reference pipeline (torchvision transforms on PIL images + DataLoader, fp32),
in the same process, as a ratio.

    python benchmarks/cpu_throughput.py                                   # both presets, random images
    python benchmarks/cpu_throughput.py --data-dir /path/to/cifar10 --images 4096 --repeats 3
    python benchmarks/cpu_throughput.py --presets cifar10_cpu --set model.width=4 --images 64   # a smoke run

"ours" is what ``python train.py experiment=<preset>`` runs per step: the preset's config composed by Hydra,
its model, method, optimizer and augmentation built by the task layer's builders, the uint8 images held in
memory, batched augmentation (``augment`` group), ``sat.engine.train_one_epoch`` with its statistics, and the
precision and memory format ``sat.tasks.train.job.setup_torch`` picks from ``trainer.*``. The ablations rerun it
with one setting changed (fp32 and/or NCHW), to show what each CPU feature gives. "reference" is the same
model, freshly initialised, in fp32 and NCHW, fed by a DataLoader (``--workers``, default 0: one core) over
PIL images with torchvision's transforms equivalent to the preset's augmentation, with plain cross-entropy
(noisy-label preset) or the preset's self-supervised loss (SSL preset: the same method object's step, so
only the data path, precision and layout differ). Both see the same images in the same number of steps.

Each epoch of every variant runs in turn (interleaved, so a change in the machine's load hits all of them);
the first is a warm-up, the best of the next ``--repeats`` is kept. Rates are given from the wall clock and
from the process's CPU time (more stable on a shared machine: with one thread, CPU time is the time the work
would take on an idle core). One thread by default (``--threads``), as the presets train.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("cifar10_cpu", "ssl_cifar10_cpu")


@dataclass
class Variant:
    name: str
    precision: str | None = None  # None: the preset's own trainer.precision
    channels_last: bool | None = None  # None: what the framework picks (setup_torch)


ABLATIONS = [Variant("ours (preset)"), Variant("ours, fp32", precision="fp32"),
             Variant("ours, fp32 + channels_last", precision="fp32", channels_last=True),
             Variant("ours, bf16 without channels_last", precision="bf16", channels_last=False)]


def compose(preset: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from sat.cli.register import register_config

    register_config()  # the schemas the primary config names, as the entry points register them
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("train", overrides=[f"experiment={preset}", "paths.output_dir=/tmp/unused",
                                                 "device=cpu", *overrides])


def load_images(cfg, data_dir: str | None, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, tuple, tuple]:
    """``n`` uint8 images (N, 32, 32, 3), labels, and the per-channel mean/std: the first ``n`` CIFAR training
    images of ``data_dir``, or random ones."""
    if data_dir:
        from sat.data.datasets import CIFAR

        data = CIFAR(cfg.dataset.name, data_dir, val_size=0).load()
        images = data.train.images[:n].permute(0, 2, 3, 1).contiguous().numpy()
        return images, data.train.labels[:n].numpy(), data.mean, data.std
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n),
            (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


class Setup:
    """One variant's model, method, optimizer and loader, built as a training run builds them."""

    def __init__(self, cfg, variant: Variant, images: np.ndarray, labels: np.ndarray, stats: tuple, seed: int):
        from sat.config.build import USER_CONFIG
        from sat.config.schema import TrainerSettings
        from sat.data.splits import ImageSet
        from sat.engine import EpochStats
        from sat.tasks.build import build_model, set_normalization
        from sat.tasks.train.job import setup_torch

        trainer = dict(cfg.trainer)
        if variant.precision is not None:
            trainer["precision"] = variant.precision
        settings = TrainerSettings.from_config(trainer)
        self.device, self.amp_dtype, self.channels_last = setup_torch(settings, "cpu", seed)
        if variant.channels_last is not None:
            self.channels_last = variant.channels_last
        self.epochs = settings.epochs
        num_classes, shape = 10, (3, 32, 32)
        self.method = USER_CONFIG.build(cfg.method, "method", "method")
        self.method.schedule(settings.epochs)
        # the method's per-sample branch (SAT's soft targets, SSL-SAT's bank) is what a run spends most epochs in
        self.epoch = int(getattr(self.method, "start_epoch", 0) or 0)
        self.model = build_model(cfg.model, num_classes, shape)
        self.method.attach_model(lambda: build_model(cfg.model, num_classes, shape))
        set_normalization([*self.model.modules(), *self.method.modules()], *stats)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        y = torch.from_numpy(np.asarray(labels)).long()
        self.method.setup(y, num_classes)
        if self.channels_last:
            self.method.to(memory_format=torch.channels_last)
        make_optimizer = USER_CONFIG.build(cfg.optimizer, "optimizer")
        self.optimizer = make_optimizer([*self.model.parameters(), *self.method.parameters()])
        augment = USER_CONFIG.build(cfg.augment, "augment") if cfg.get("augment") is not None else None
        split = ImageSet(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), y, torch.arange(len(y)))
        self.loader = split.loader(settings.batch_size, device=self.device, shuffle=True, augment=augment, seed=seed)
        self.stats = lambda: EpochStats(self.device)

    def epoch_run(self) -> None:
        from sat.engine import train_one_epoch

        train_one_epoch(self.model, self.method, self.loader, self.optimizer, self.epoch, self.stats(), self.amp_dtype,
                        self.channels_last)


class PILImages(torch.utils.data.Dataset):
    """torchvision.datasets.CIFAR10's hot path: a PIL image per sample, then the transforms (one or two views)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transforms: list):
        self.images, self.labels, self.transforms = images, labels, transforms

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        image = Image.fromarray(self.images[i])
        views = [t(image) for t in self.transforms]
        return (views[0] if len(views) == 1 else tuple(views)), int(self.labels[i]), i


def reference_transforms(augment) -> list:
    """torchvision transforms equivalent to the preset's batched augmentation (to [0, 1]: the model normalises)."""
    import torchvision.transforms as T

    from sat.data.augment import CropFlip
    from sat.data.views import TwoViews

    if augment is None:
        return [T.ToTensor()]
    if isinstance(augment, CropFlip):
        ops = ([T.RandomCrop(32, padding=augment.padding)] if augment.padding else []) + \
              ([T.RandomHorizontalFlip()] if augment.flip else [])
        return [T.Compose([*ops, T.ToTensor()])]
    if isinstance(augment, TwoViews):
        def view(solarize_p: float):
            ops = [T.RandomResizedCrop(32, scale=augment.crop_scale), T.RandomHorizontalFlip(augment.flip_p),
                   T.RandomApply([T.ColorJitter(*augment.jitter)], p=augment.jitter_p),
                   T.RandomGrayscale(augment.grayscale_p)]
            if solarize_p > 0:
                ops.append(T.RandomSolarize(128, p=solarize_p))
            return T.Compose([*ops, T.ToTensor()])
        return [view(augment.solarize_p[0]), view(augment.solarize_p[1])]
    raise SystemExit(f"no reference pipeline for augment {augment!r}")


class Reference:
    """The plain loop: the same model in fp32/NCHW, a DataLoader over PIL images with torchvision transforms."""

    def __init__(self, cfg, images: np.ndarray, labels: np.ndarray, stats: tuple, seed: int, workers: int):
        from sat.config.build import USER_CONFIG
        from sat.methods.ssl import SelfSupervised
        from sat.tasks.build import build_model, set_normalization

        torch.manual_seed(seed)
        self.model = build_model(cfg.model, 10, (3, 32, 32))
        self.method = USER_CONFIG.build(cfg.method, "method", "method")
        self.ssl = isinstance(self.method, SelfSupervised)
        params = list(self.model.parameters())
        if self.ssl:  # the same loss as ours: only the data path, precision and layout differ
            self.method.schedule(cfg.trainer.epochs)
            self.method.attach_model(lambda: build_model(cfg.model, 10, (3, 32, 32)))
            self.method.setup(torch.from_numpy(np.asarray(labels)).long(), 10)
            params += list(self.method.parameters())
        set_normalization([*self.model.modules(), *self.method.modules()], *stats)
        self.epoch = int(getattr(self.method, "start_epoch", 0) or 0)
        augment = USER_CONFIG.build(cfg.augment, "augment") if cfg.get("augment") is not None else None
        self.optimizer = USER_CONFIG.build(cfg.optimizer, "optimizer")(params)
        self.loader = torch.utils.data.DataLoader(
            PILImages(images, labels, reference_transforms(augment)), batch_size=int(cfg.trainer.batch_size),
            shuffle=True, num_workers=workers, persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(seed))

    def epoch_run(self) -> None:
        self.model.train()
        for x, y, index in self.loader:
            if self.ssl:
                loss, _ = self.method(self.model, tuple(x), y, index, self.epoch)
            else:
                loss = F.cross_entropy(self.model(x), y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()


def timed(run) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def cpu_features() -> dict:
    flags = ""
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0]
    except (OSError, IndexError):
        pass
    bf16 = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return {"cpu": platform.processor() or platform.machine(), "capability": torch.backends.cpu.get_cpu_capability(),
            "onednn": torch.backends.mkldnn.is_available(),
            "onednn_bf16": bool(bf16()) if callable(bf16) else None,
            "avx512_bf16": "avx512_bf16" in flags.split(), "amx_bf16": "amx_bf16" in flags.split(),
            "torch": torch.__version__}


def bench_preset(preset: str, args) -> list[dict]:
    cfg = compose(preset, args.set)
    images, labels, mean, std = load_images(cfg, args.data_dir, args.images, args.seed)
    stats = (mean, std)
    runners = {v.name: Setup(cfg, v, images, labels, stats, args.seed) for v in ABLATIONS}
    runners["reference (torchvision + DataLoader, fp32)"] = Reference(cfg, images, labels, stats, args.seed,
                                                                      args.workers)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runners}
    for repeat in range(args.repeats + 1):  # repeat 0 warms every variant up
        for name, runner in runners.items():
            measured = timed(runner.epoch_run)
            if repeat:
                times[name].append(measured)
    reference = "reference (torchvision + DataLoader, fp32)"
    best = {name: (min(w for w, _ in t), min(c for _, c in t)) for name, t in times.items()}
    rows = []
    for name, (wall, cpu) in best.items():
        runner = runners[name]
        rows.append({"preset": preset, "variant": name, "images": len(labels),
                     "precision": "fp32" if name == reference or runner.amp_dtype is None else "bf16",
                     "channels_last": False if name == reference else bool(runner.channels_last),
                     "img_per_s_wall": len(labels) / wall, "img_per_s_cpu": len(labels) / cpu,
                     "ratio_wall": best[reference][0] / wall, "ratio_cpu": best[reference][1] / cpu})
    return rows


def to_markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"CPU throughput: {meta['images']} images x best of {meta['repeats']} epochs, {meta['threads']} "
             f"thread(s), reference DataLoader workers {meta['workers']}; load average {meta['load_start']} -> "
             f"{meta['load_end']}; {meta['features']}", "",
             "| preset | variant | precision | channels_last | img/s (wall) | img/s (CPU time) | x reference (wall) "
             "| x reference (CPU time) |", "|---|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['variant']} | {r['precision']} | {r['channels_last']} | "
                     f"{r['img_per_s_wall']:.0f} | {r['img_per_s_cpu']:.0f} | {r['ratio_wall']:.2f} | "
                     f"{r['ratio_cpu']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    ap.add_argument("--data-dir", help="a CIFAR-10 folder (cifar-10-batches-py/); default: random images")
    ap.add_argument("--images", type=int, default=4096, help="images per timed epoch")
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per variant (best kept), after a warm-up")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers of the reference pipeline")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", nargs="*", default=[], help="more config overrides for every preset (model.width=4)")
    ap.add_argument("--out", type=Path, help="also write OUT.json and OUT.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    meta = {"images": args.images, "repeats": args.repeats, "threads": args.threads, "workers": args.workers,
            "features": cpu_features(), "load_start": " ".join(f"{v:.2f}" for v in os.getloadavg())}
    rows = [row for preset in args.presets for row in bench_preset(preset, args)]
    meta["load_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    text = to_markdown(rows, meta)
    print(text, flush=True)
    if args.out:
        from sat.run.files import write_atomic

        write_atomic(args.out.with_suffix(".json"), json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
        write_atomic(args.out.with_suffix(".md"), text + "\n")


if __name__ == "__main__":
    main()
