"""Issue 9's GPU check: one table of training, TRADES, PGD, GPU-sharing and epoch-overhead
numbers for our real training path against a reference-style path, in one run.

Synthetic CIFAR-shaped data (uint8, 50,000 train + 10,000 test images; no download).
Ours = DeviceLoader + CropFlip + bf16 autocast + channels-last + sat.engine.train_one_epoch
with SelfAdaptiveTraining past its start epoch (eager, then torch.compile). Reference =
torchvision PIL transforms + DataLoader workers + fp32 + the authors' loss structure.
Every measurement runs for a fixed time window after warm-up (device synced at both
ends), and the whole run keeps to a deadline: rows that would not fit are skipped and
shown as such. Imports no Hydra (the GPU machine has none).

    python benchmarks/gpu_bench.py --out gpu_bench      # CUDA: about 7 minutes on an H100
    python benchmarks/gpu_bench.py --cpu-smoke          # every row at tiny sizes, CPU, < 1 minute
    bash benchmarks/gpu_check.sh [--cpu-smoke]          # the same, wrapped with a hard time limit
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from data_pipeline import PILDataset  # benchmarks/ (this script's folder) is on sys.path

from sat.attacks import PGD, robust_accuracy
from sat.data.augment import CropFlip
from sat.data.loader import DeviceLoader
from sat.engine import EpochStats, NonFiniteLoss, evaluate, train_one_epoch
from sat.methods import TRADES, SelfAdaptiveTraining
from sat.models import ResNet, WideResNet, count_parameters, with_normalization
from sat.run.checkpoint import checksum, rng_state, save_checkpoint

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
SHAPE = (3, 32, 32)


# --- settings ----------------------------------------------------------------------------


@dataclass
class Sizes:
    """What is measured, and for how long. The GPU defaults fit 8 minutes on an H100."""

    images: int = 50_000
    test_images: int = 10_000
    r18_widths: tuple[int, ...] = (4, 16, 64)  # the double-descent sweep's models (Adam, batch 128)
    r34_width: int = 64  # the noisy-label table's model (SGD, batch 256)
    batch: int = 256
    dd_batch: int = 128
    eval_batch: int = 1024
    trades_batch: int = 128
    trades_steps: int = 10
    wrn: tuple[int, int] = (34, 10)  # depth, width
    pgd_steps: int = 20
    pgd_batch: int = 256
    job_widths: tuple[int, ...] = (4, 8)  # the concurrent small jobs (alternating)
    workers: int = 8  # DataLoader workers of the reference path
    warm_steps: int = 10
    train_window: float = 6.0  # seconds per timed measurement
    trades_window: float = 12.0
    pgd_window: float = 6.0
    job_window: float = 6.0
    ckpt_reps: int = 3
    deadline: float = 420.0  # seconds for the whole run; gpu_check.sh stops it at 460
    row_overhead: float = 10.0  # estimated set-up + warm-up seconds per measurement (for the deadline checks)
    job_overhead: float = 20.0  # estimated start-up of the concurrent job processes
    compile_reserve: float = 90.0  # a compiled row starts only with this much time left
    compile_backend: str = "inductor"
    compile_mode: str | None = None  # torch.compile's mode: None (default), reduce-overhead, max-autotune, ...
    compile_rows: str = "all"  # all | none | comma list of row names (r34, r18w64, ...)

    @classmethod
    def smoke(cls) -> Sizes:
        # Tiny everything: checks that every row runs, not how fast.
        return cls(images=128, test_images=64, r18_widths=(2, 4), r34_width=2, batch=32, dd_batch=32, eval_batch=64,
                   trades_batch=16, trades_steps=2, wrn=(10, 1), pgd_steps=5, pgd_batch=32, job_widths=(1, 2),
                   workers=1, warm_steps=2, train_window=0.15, trades_window=0.15, pgd_window=0.1, job_window=0.1,
                   ckpt_reps=1, deadline=90.0, row_overhead=1.0, job_overhead=4.0, compile_reserve=5.0,
                   compile_backend="eager", compile_rows="r18w2")


@dataclass
class Spec:
    """One training setting: a CIFAR ResNet and its paper optimiser and batch."""

    name: str
    depth: int
    width: int
    batch: int
    optimizer: str  # sgd (the noisy-label table) | adam (the double-descent sweep)

    def label(self) -> str:
        return f"ResNet-{self.depth} w{self.width} b{self.batch} {self.optimizer}"


def specs(s: Sizes) -> list[Spec]:
    return [Spec("r34", 34, s.r34_width, s.batch, "sgd")] + [
        Spec(f"r18w{w}", 18, w, s.dd_batch, "adam") for w in s.r18_widths]


def make_optimizer(name: str, params, fused: bool = False) -> torch.optim.Optimizer:
    # conf/optimizer/{sgd,adam}.yaml with the experiments' values; PyTorch's default implementation
    # (foreach on CUDA) unless fused: one kernel for the whole update
    kw = {"fused": True} if fused else {}
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4, **kw)
    return torch.optim.Adam(params, lr=1e-4, **kw)


@dataclass(frozen=True)
class Variant:
    """How our path runs: the defaults are what TrainingJob does on CUDA today."""

    compile_backend: str | None = None  # torch.compile the model (trainer.compile=true)
    compile_mode: str | None = None
    fused: bool = False  # fused optimizer step
    channels_last: bool = True  # CUDA only, as trainer.channels_last
    amp: bool = True  # bf16 autocast, CUDA only, as trainer.precision=auto


# ablations of the ResNet-34 row: each changes one thing (the last also compiles, into CUDA graphs)
ABLATIONS = [("fused SGD", Variant(fused=True)), ("no channels-last", Variant(channels_last=False)),
             ("fp32, no autocast", Variant(amp=False)),
             ("compiled reduce-overhead (CUDA graphs) + fused SGD",
              Variant(compile_backend="inductor", compile_mode="reduce-overhead", fused=True))]


# --- data --------------------------------------------------------------------------------


@dataclass
class Data:
    host_images: np.ndarray  # (N, 32, 32, 3) uint8, for the reference path's PIL transforms
    host_labels: np.ndarray
    images: torch.Tensor  # (N, 3, 32, 32) uint8 on the device
    labels: torch.Tensor  # given (noisy) labels
    true_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def make_data(n: int, n_test: int, device: torch.device, noise: float = 0.4, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    host = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    true = rng.integers(0, 10, n)
    flip = rng.random(n) < noise  # noisy labels, so EpochStats takes its memorisation path as real runs do
    given = np.where(flip, rng.integers(0, 10, n), true)
    test = torch.randint(0, 256, (n_test, *SHAPE), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    return Data(host, given, to(host.transpose(0, 3, 1, 2)), to(given), to(true), test.to(device),
                torch.from_numpy(rng.integers(0, 10, n_test)).to(device))


# --- timing ------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def timed(device: torch.device, fn) -> tuple[float, object]:
    """Seconds of ``fn()`` between two device syncs (the host runs ahead of the GPU,
    so a host clock alone would time the launches, not the work)."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def counted(fn, n: int) -> float | None:
    """Floating-point operations per image of ``fn()`` on ``n`` images, by PyTorch's own
    formulas (matrix products and convolutions): throughput x this = the achieved FLOP
    rate, to set against the card's bf16 matrix peak (about 790 TFLOP/s on an H100/H200).
    A dispatch mode of its own, because FlopCounterMode's module hooks break on the
    attacks' ``autograd.grad``. None if this PyTorch lacks the formulas."""
    try:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.flop_counter import flop_registry
    except ImportError:
        return None

    class Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                Count.total += formula(*args, **kwargs, out_val=out)
            return out

    with Count():
        fn()
    return Count.total / n


def step_flops(model, method, device: torch.device, n: int = 2) -> float:
    """FLOPs per image of one training step (forward, any attack, backward)."""
    x = torch.rand(n, *SHAPE, device=device)
    y, index = torch.arange(n, device=device) % 10, torch.arange(n, device=device)

    def step():
        loss, _ = method(model, x, y, index, 1)
        loss.backward()

    flops = counted(step, n)
    model.zero_grad(set_to_none=True)
    return flops or 0.0


# --- our path ----------------------------------------------------------------------------


class OursJob:
    """The real training path: train_one_epoch over a DeviceLoader, one EpochStats per
    epoch read at the epoch's end, as TrainingJob does (minus scheduler and logging)."""

    def __init__(self, model, method, data: Data, batch: int, optimizer: str, device: torch.device,
                 variant: Variant = Variant(), seed: int = 0):
        self.cuda = device.type == "cuda"
        self.channels_last = self.cuda and variant.channels_last
        self.model = model.to(device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.method = method
        method.setup(data.labels, 10)
        method.to(device)
        self.optimizer = make_optimizer(optimizer, list(self.model.parameters()) + list(method.parameters()),
                                        variant.fused)
        self.loader = DeviceLoader(data.images, data.labels, batch, shuffle=True, augment=CropFlip(4), seed=seed)
        # as TrainingJob does with trainer.compile=true: the model is compiled, the rest of the step is not
        kw = {"mode": variant.compile_mode} if variant.compile_mode else {}
        self.step_model = torch.compile(self.model, backend=variant.compile_backend, **kw) \
            if variant.compile_backend else self.model
        self.true_labels, self.device = data.true_labels, device
        self.amp_dtype = torch.bfloat16 if self.cuda and variant.amp else None
        self.epoch = 1  # past SAT's start epoch (0): the soft targets are updated every step
        self.flops = step_flops(self.model, method, device)  # before any optimizer state exists
        self.stats: EpochStats | None = None
        self.steps = 0
        self.nonfinite = False

    def _count(self, _):
        self.steps += 1

    def train(self, steps: int | None = None, seconds: float | None = None) -> int:
        """Train for ``steps`` steps or until ``seconds`` have passed (host clock; the
        caller syncs); returns the images trained on."""
        end = time.perf_counter() + seconds if seconds is not None else math.inf
        last = self.steps + steps if steps is not None else math.inf
        stop = lambda: self.steps >= last or time.perf_counter() >= end  # noqa: E731
        images = 0
        while True:
            if self.stats is None:
                self.stats = EpochStats(self.device, self.true_labels, per_sample=True)
            before = self.stats.seen
            complete = train_one_epoch(self.step_model, self.method, self.loader, self.optimizer, self.epoch,
                                       self.stats, self.amp_dtype, self.channels_last, should_stop=stop,
                                       on_step=self._count)
            images += self.stats.seen - before
            if complete:
                try:
                    self.stats.metrics(self.epoch)  # the epoch's single host sync
                except NonFiniteLoss:  # random labels at the paper's lr: timing is still valid
                    self.nonfinite = True
                self.stats = None
            if stop():
                return images

    def warm_up(self, steps: int) -> None:
        """``steps`` steps, then the epoch's last (partial) batch, so that its shape is
        tuned (cudnn.benchmark) or compiled before the timed window, not in it."""
        self.train(steps=steps)
        if self.loader.position:
            state = self.loader.state_dict()
            state["position"] = len(self.loader) - 1
            self.loader.load_state_dict(state)
            self.train(steps=1)

    def rate(self, seconds: float) -> float:
        dt, images = timed(self.device, lambda: self.train(seconds=seconds))
        return images / dt


def resnet(spec: Spec) -> torch.nn.Module:
    torch.manual_seed(0)
    return with_normalization(ResNet(10, SHAPE, depth=spec.depth, width=spec.width), MEAN, STD)


def wrn(s: Sizes) -> torch.nn.Module:
    torch.manual_seed(0)
    return with_normalization(WideResNet(10, SHAPE, depth=s.wrn[0], width=s.wrn[1]), MEAN, STD)


def ours_job(spec: Spec, data: Data, device, variant: Variant = Variant()) -> OursJob:
    return OursJob(resnet(spec), SelfAdaptiveTraining(alpha=0.9, start_epoch=0), data, spec.batch, spec.optimizer,
                   device, variant)


# --- the reference-style path --------------------------------------------------------------


class RefSAT:
    """The authors' SelfAdaptiveTraining loss (fp32, soft labels indexed per batch)."""

    def __init__(self, labels: torch.Tensor, momentum: float = 0.9):
        self.soft, self.momentum = F.one_hot(labels.long(), 10).float(), momentum

    def __call__(self, logits, y, index):
        prob = F.softmax(logits.detach(), dim=1)
        self.soft[index] = self.momentum * self.soft[index] + (1 - self.momentum) * prob
        weights = self.soft[index].max(dim=1)[0]
        weights *= logits.shape[0] / weights.sum()
        loss = torch.sum(-F.log_softmax(logits, dim=1) * self.soft[index], dim=1)
        return (weights * loss).mean()


class IndexedPIL(PILDataset):
    """The reference code's dataset wrapper: (image, label, index), via PIL transforms."""

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x, y, i


def reference_loader(data: Data, batch: int, workers: int, cuda: bool):
    return torch.utils.data.DataLoader(IndexedPIL(data.host_images, data.host_labels), batch_size=batch, shuffle=True,
                                       num_workers=workers, pin_memory=cuda, persistent_workers=workers > 0)


def reference_rate(spec: Spec, data: Data, device, s: Sizes, seconds: float) -> float:
    """images/s of the reference structure: PIL transforms in DataLoader workers, fp32,
    contiguous NCHW, the authors' SAT loss and a ``loss.item()`` per step (their meters)."""
    torch.manual_seed(0)
    model = ResNet(10, SHAPE, depth=spec.depth, width=spec.width).to(device)  # normalised by the transforms
    optimizer = make_optimizer(spec.optimizer, model.parameters())
    criterion = RefSAT(data.labels)
    loader = reference_loader(data, spec.batch, s.workers, device.type == "cuda")

    def batches():
        while True:
            yield from loader

    it = batches()

    def step():
        x, y, index = next(it)
        x, y, index = x.to(device, non_blocking=True), y.to(device, non_blocking=True), index.to(device)
        loss = criterion(model(x), y, index)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()
        return len(y)

    for _ in range(s.warm_steps):  # worker start-up, cudnn autotuning
        step()

    def window():
        end, images = time.perf_counter() + seconds, 0
        while time.perf_counter() < end:
            images += step()
        return images

    dt, images = timed(device, window)
    it = loader = None  # stops the workers  # noqa: F841
    return images / dt


# --- rows --------------------------------------------------------------------------------


@dataclass
class Row:
    row: str
    ours: float | str | None = None
    reference: float | str | None = None
    speedup: float | None = None  # ours throughput / reference throughput (= reference time / ours time)
    tflops: float | None = None  # ours, achieved (counted FLOPs x images/s)
    peak_gib: str = ""
    window_s: str = ""
    target: str = ""
    extra: dict = field(default_factory=dict)


class Bench:
    def __init__(self, args, sizes: Sizes):
        self.args, self.s = args, sizes
        self.device = torch.device(args.device)
        self.t0 = time.perf_counter()
        self.rows: list[Row] = []
        self.rates: dict[str, float] = {}  # "r34/eager", "r34/compiled", "r34/reference", ...
        self.overhead: dict[str, float] = {}
        self.failures = 0

    def left(self) -> float:
        return self.s.deadline - (time.perf_counter() - self.t0)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"[{time.perf_counter() - self.t0:6.1f}s] {row.row}: ours={_fmt(row.ours)} ref={_fmt(row.reference)}",
              file=sys.stderr, flush=True)
        self.report("running")  # the files hold every row measured so far, whatever stops the run

    def report(self, status: str) -> str:
        """The table with its header; also written to OUT.md and OUT.json when --out is given."""
        s, cuda = self.s, self.device.type == "cuda"
        hydra = sorted({m.split(".")[0] for m in sys.modules} & {"hydra", "omegaconf", "antlr4"})
        meta = {"device": describe(self.device), "status": status, "elapsed_s": round(time.perf_counter() - self.t0, 1),
                "sizes": asdict(s), "hydra_imported": hydra}
        header = (
            f"gpu_bench ({status}, {meta['elapsed_s']:.0f} s): {meta['device']}\n"
            f"{s.images:,} train / {s.test_images:,} test synthetic CIFAR-shaped uint8 images on the device. "
            f"ours = DeviceLoader + CropFlip + SAT + EpochStats via train_one_epoch"
            f"{' + bf16 autocast + channels-last' if cuda else ''}; reference = PIL transforms + DataLoader "
            f"({s.workers} workers) + fp32{' (cudnn TF32 convolutions, its default)' if cuda else ''} + the authors' "
            "loss.\nspeedup = ours img/s / reference img/s (= reference time / ours time). TFLOP/s = counted FLOPs x "
            "img/s (H100 bf16 dense peak about 790). Budget: each measurement runs for its window (s) after warm-up; "
            f"the run keeps to {s.deadline:g} s and skips rows that would not fit.")
        text = header + "\n\n" + table(self.rows)
        if self.args.out:
            out = Path(self.args.out)
            stem = out.with_suffix("") if out.suffix in (".json", ".md") else out
            stem.parent.mkdir(parents=True, exist_ok=True)
            Path(f"{stem}.md").write_text(text + "\n")
            Path(f"{stem}.json").write_text(json.dumps({"meta": meta, "rates": self.rates, "overhead": self.overhead,
                                                        "rows": [asdict(r) for r in self.rows]}, indent=1))
        return text

    def fits(self, name: str, seconds: float) -> bool:
        """Whether a measurement estimated at ``seconds`` fits before the deadline; if not,
        the row is shown as skipped."""
        if self.left() >= seconds:
            return True
        self.add(Row(name, f"skipped: {seconds:.0f} s needed, {max(self.left(), 0):.0f} s left"))
        return False

    def guarded(self, name: str, fn) -> None:
        """Run one section; a failure (out of memory, a compile error) becomes a row and the
        rest still runs: the GPU time is too scarce to lose the table to one error."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            self.add(Row(name, f"failed: {type(e).__name__}: {str(e).splitlines()[0][:150] if str(e) else ''}"))
            self.failures += 1
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    # training rows ---------------------------------------------------------------------

    def train_rows(self, spec: Spec, data: Data, overhead: bool = False) -> None:
        s, dev = self.s, self.device
        name = f"{spec.label()} train img/s"
        if not self.fits(name, 2 * (s.train_window + s.row_overhead)):
            return
        reset_peak(dev)
        job = ours_job(spec, data, dev)
        job.warm_up(s.warm_steps)
        ours = self.rates[f"{spec.name}/eager"] = job.rate(s.train_window)
        peak, flops = peak_gib(dev), job.flops
        split = self.overhead_row(spec, job, data) if overhead else None
        del job
        reset_peak(dev)
        ref = self.rates[f"{spec.name}/reference"] = reference_rate(spec, data, dev, s, s.train_window)
        target = ">= 24,000 img/s" if spec.name == "r34" and spec.width == 64 else ""
        self.add(Row(name + " (eager)", ours, ref, ours / ref, tflops=_tflops(ours, flops),
                     peak_gib=_peak(peak, peak_gib(dev)), window_s=f"{s.train_window:g}+{s.train_window:g}",
                     target=target))
        if split is not None:
            self.add(split)

    def compiled_row(self, spec: Spec, data: Data) -> None:
        s, dev = self.s, self.device
        name = f"{spec.label()} train img/s (compiled)"
        if not self.fits(name, s.compile_reserve):
            return
        torch._dynamo.reset()  # each row compiles afresh (no recompile limits carried over)
        reset_peak(dev)
        job = ours_job(spec, data, dev, Variant(compile_backend=s.compile_backend, compile_mode=s.compile_mode))
        warm_s, _ = timed(dev, lambda: job.warm_up(s.warm_steps))  # includes compiling both batch shapes
        ours = self.rates[f"{spec.name}/compiled"] = job.rate(s.train_window)
        ref = self.rates.get(f"{spec.name}/reference")
        target = ">= 24,000 img/s; " if spec.name == "r34" and spec.width == 64 else ""
        self.add(Row(name, ours, ref, ours / ref if ref else None, tflops=_tflops(ours, job.flops),
                     peak_gib=_peak(peak_gib(dev), None), window_s=f"{s.train_window:g}",
                     target=target + f"mode {s.compile_mode or 'default'}, compile + warm-up {warm_s:.0f} s",
                     extra={"warm_up_and_compile_s": warm_s}))

    def ablation_row(self, spec: Spec, data: Data, what: str, variant: Variant) -> None:
        """Our path with one thing changed, against our path as it is (same run)."""
        s, dev = self.s, self.device
        name = f"{spec.label()} train img/s, ablation: {what}"
        base = self.rates.get(f"{spec.name}/eager")
        if variant.compile_backend and dev.type == "cpu":
            variant = Variant(**{**asdict(variant), "compile_backend": s.compile_backend, "compile_mode": None})
        if not self.fits(name, s.compile_reserve if variant.compile_backend else s.train_window + s.row_overhead):
            return
        torch._dynamo.reset()
        reset_peak(dev)
        job = ours_job(spec, data, dev, variant)
        warm_s, _ = timed(dev, lambda: job.warm_up(s.warm_steps))
        ours = job.rate(s.train_window)
        self.rates[f"{spec.name}/{what}"] = ours
        self.add(Row(name, ours, base, ours / base if base else None, tflops=_tflops(ours, job.flops),
                     peak_gib=_peak(peak_gib(dev), None), window_s=f"{s.train_window:g}",
                     target=f"reference = our eager row; warm-up {warm_s:.0f} s"))

    # epoch overhead ----------------------------------------------------------------------

    def overhead_row(self, spec: Spec, job: OursJob, data: Data) -> Row:
        """Evaluation of the test images and the real checkpoint write, per epoch."""
        s, dev = self.s, self.device
        test = DeviceLoader(data.test_images, data.test_labels, s.eval_batch)
        ev = lambda: evaluate(job.model, test, job.amp_dtype, job.channels_last)  # noqa: E731
        ev()  # warm-up: cudnn autotuning of the eval shapes
        eval_s = statistics.median(timed(dev, ev)[0] for _ in range(3))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(job.optimizer, 200)
        state = {  # what TrainingJob.state() holds
            "epoch": 1, "model": job.model.state_dict(), "optimizer": job.optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "method": job.method.state_dict(), "loader": job.loader.state_dict(),
            "rng": rng_state(), "at_best_val": None, "metrics": {}, "partial": None, "config": {},
            "noise_sha256": "0" * 64, "params": count_parameters(job.model), "model_outputs": 10, "packages": {},
            "hydra_files": {},
        }
        host_s, host = timed(dev, lambda: _to_host(state))
        t = time.perf_counter()
        checksum(host)
        checksum_s = time.perf_counter() - t
        folder = Path(tempfile.mkdtemp(prefix="sat_bench_ckpt_", dir=self.args.ckpt_dir))
        try:
            times = []
            for _ in range(1 + s.ckpt_reps):  # the first write creates the folders
                times.append(timed(dev, lambda: save_checkpoint(state, folder, ["last"]))[0])
            ckpt_s = statistics.median(times[1:])
            size_mb = (folder / "last.pt").stat().st_size / 1e6
        finally:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        train_s = s.images / self.rates[f"{spec.name}/eager"]
        total = train_s + eval_s + ckpt_s
        self.overhead = {"train_s": train_s, "eval_s": eval_s, "checkpoint_s": ckpt_s, "to_host_s": host_s,
                         "checksum_s": checksum_s, "checkpoint_mb": size_mb}
        pct = lambda x: 100 * x / total  # noqa: E731
        return (Row(
            f"epoch split {spec.label()}: train {s.images:,} / eval {len(data.test_labels):,} / checkpoint",
            f"{train_s:.2f} / {eval_s:.2f} / {ckpt_s:.2f} s = {pct(train_s):.0f} / {pct(eval_s):.0f} / "
            f"{pct(ckpt_s):.0f} %", window_s=f"{s.ckpt_reps} writes", extra=dict(self.overhead),
            target=f"eval+ckpt <= 10 %; ckpt {size_mb:.0f} MB, of which to-host {host_s:.2f} s, checksum "
                   f"{checksum_s:.2f} s"))

    # TRADES and PGD ------------------------------------------------------------------------

    def trades_row(self, data: Data) -> None:
        from trades_step import reference_step  # the reference code's structure, fp32

        s, dev = self.s, self.device
        name = f"TRADES+SAT WRN-{s.wrn[0]}-{s.wrn[1]} b{s.trades_batch} {s.trades_steps} steps img/s"
        if not self.fits(name, 2 * (s.trades_window + s.row_overhead)):
            return
        reset_peak(dev)
        method = TRADES(natural=SelfAdaptiveTraining(alpha=0.9, start_epoch=0), steps=s.trades_steps)
        job = OursJob(wrn(s), method, data, s.trades_batch, "sgd", dev)
        job.warm_up(2)
        ours = self.rates["trades/eager"] = job.rate(s.trades_window)
        peak, flops = peak_gib(dev), job.flops
        del job, method
        reset_peak(dev)
        model = wrn(s).to(dev)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
        x = data.images[: s.trades_batch].float() / 255
        y = data.labels[: s.trades_batch]
        step = lambda: reference_step(model, optimizer, x, y, perturb_steps=s.trades_steps)  # noqa: E731
        step()

        def window():
            end, images = time.perf_counter() + s.trades_window, 0
            while time.perf_counter() < end:
                step()
                images += len(y)
            return images

        dt, images = timed(dev, window)
        ref = self.rates["trades/reference"] = images / dt
        self.add(Row(name, ours, ref, ours / ref, tflops=_tflops(ours, flops), peak_gib=_peak(peak, peak_gib(dev)),
                     window_s=f"{s.trades_window:g}+{s.trades_window:g}",
                     target=">= 960 img/s (2x 480)" if s.wrn == (34, 10) else ""))

    def pgd_rows(self, data: Data) -> None:
        s, dev = self.s, self.device
        name = f"PGD-{s.pgd_steps} eval WRN-{s.wrn[0]}-{s.wrn[1]} b{s.pgd_batch} img/s"
        if not self.fits(name, 3 * s.pgd_window + s.row_overhead):
            return
        model = wrn(s).to(dev).eval()  # as attack.py restores it: fp32, contiguous
        attack = PGD(eps=0.031, step_size=0.003, steps=s.pgd_steps)  # conf/attack/pgd20.yaml
        x_all = data.test_images.float() / 255
        y_all = data.test_labels

        def windowed(one_batch):
            """Attack batch after batch until the window closes; images/s."""
            one_batch(0)  # warm-up

            def window():
                end, images, i = time.perf_counter() + s.pgd_window, 0, 0
                while time.perf_counter() < end:
                    images += one_batch(i)
                    i = (i + s.pgd_batch) % max(len(y_all) - s.pgd_batch + 1, 1)
                return images

            reset_peak(dev)
            dt, images = timed(dev, window)
            return images / dt, peak_gib(dev)

        def ours_batch(i, n=s.pgd_batch):  # the real path: robust_accuracy (natural + adversarial predictions)
            robust_accuracy(model, attack, x_all[i:i + n], y_all[i:i + n], n)
            return len(y_all[i:i + n])

        flops = counted(lambda: ours_batch(0, 2), 2) or 0.0
        ours, peak = windowed(ours_batch)
        ref, ref_peak = windowed(lambda i: reference_pgd(model, x_all[i:i + s.pgd_batch], y_all[i:i + s.pgd_batch],
                                                          0.031, s.pgd_steps, 0.003))
        self.add(Row(name + " (fp32, as attack.py)", ours, ref, ours / ref, tflops=_tflops(ours, flops),
                     peak_gib=_peak(peak, ref_peak), window_s=f"{s.pgd_window:g}+{s.pgd_window:g}",
                     target="fp32 convs use TF32 (cudnn default)" if dev.type == "cuda" else ""))
        if dev.type == "cuda":  # what bf16 autocast + channels-last would give (attack.py does not use them today)
            model = model.to(memory_format=torch.channels_last)
            with torch.autocast("cuda", torch.bfloat16):
                bf16, peak = windowed(ours_batch)
            self.add(Row(name + " (bf16 + channels-last)", bf16, ref, bf16 / ref, tflops=_tflops(bf16, flops),
                         peak_gib=_peak(peak, None), window_s=f"{s.pgd_window:g}",
                         target="not what attack.py does today"))

    # GPU sharing ---------------------------------------------------------------------------

    def sharing_rows(self) -> None:
        """Four job processes (widths a, b, a, b), started and warmed up together; then
        rounds: job 0 alone, job 1 alone, jobs 0-1 together, all four together."""
        s = self.s
        a, b = s.job_widths
        if not self.fits(f"concurrent ResNet-18 w{a}/w{b} jobs", 4 * s.job_window + s.job_overhead):
            return
        widths = [a, b, a, b]
        rounds = run_jobs(self.args, widths, [[0], [1], [0, 1], [0, 1, 2, 3]])
        solo = {a: rounds[0][0], b: rounds[1][0]}
        for results in rounds[2:]:
            n = len(results)
            aggregate = sum(r["rate"] for r in results)
            # work done together / the time the same work takes one job at a time
            speedup = sum(r["rate"] / solo[r["width"]]["rate"] for r in results)
            alone = statistics.mean(solo[r["width"]]["rate"] for r in results)
            peak = max((r["peak_gib"] or 0) for r in results)
            self.add(Row(f"{n} concurrent jobs R18 w{'/w'.join(str(r['width']) for r in results)} b{s.dd_batch}: "
                         "aggregate img/s (ref = one job alone; speedup = vs one at a time)", aggregate, alone, speedup,
                         peak_gib=f"{peak:.2f} each" if self.device.type == "cuda" else "",
                         window_s=f"{s.job_window:g}", target=">= 3x (widths 1-8)" if n == 4 else "",
                         extra={"jobs": results, "solo": list(solo.values())}))
            self.rates[f"share{n}"] = speedup

    # implied wall times --------------------------------------------------------------------

    def wall_rows(self) -> None:
        s, r, o = self.s, self.rates, self.overhead

        def best(prefix):
            vals = [r[k] for k in (f"{prefix}/eager", f"{prefix}/compiled") if k in r]
            return max(vals) if vals else None

        if "r34/reference" in r and o:
            per_epoch = lambda rate: 50_000 / rate + o["eval_s"] + o["checkpoint_s"]  # noqa: E731
            ours, ref = 200 * per_epoch(best("r34")), 200 * per_epoch(r["r34/reference"])
            self.add(Row(f"implied: ResNet-34 w{s.r34_width} 200 ep x 50k + eval + ckpt (best of eager/compiled)",
                         _dur(ours), _dur(ref), ref / ours, target="<= 8 min" if s.r34_width == 64 else ""))
        if "trades/reference" in r:
            ours, ref = 100 * 50_000 / r["trades/eager"], 100 * 50_000 / r["trades/reference"]
            self.add(Row(f"implied: TRADES+SAT WRN-{s.wrn[0]}-{s.wrn[1]} 100 ep x 50k (training only)", _dur(ours),
                         _dur(ref), ref / ours))
        measured = [w for w in s.r18_widths if f"r18w{w}/reference" in r]
        if measured:
            def sweep(kind):
                pts = [(w, best(f"r18w{w}") if kind == "ours" else r.get(f"r18w{w}/reference")) for w in measured]
                if any(v is None for _, v in pts):
                    return None
                return sum(2 * 4000 * 50_000 / _interp(pts, w) for w in range(1, 65))  # methods ce,sat x widths 1-64

            ours, ref = sweep("ours"), sweep("reference")
            row = Row("implied: double-descent sweep 128 runs x 4000 ep x 50k (R18 w1-64, rates interpolated "
                      f"from w{'/'.join(map(str, measured))}), one job at a time", _dur(ours),
                      _dur(ref) if ref else None, ref / ours if ref else None)
            if "share4" in r:  # widths <= 8 run 4 at a time, at the measured sharing speedup
                small = sum(2 * 4000 * 50_000 / _interp([(w, best(f"r18w{w}")) for w in measured], w)
                            for w in range(1, 9))
                row.target = f"with 4 jobs sharing for w<=8: {_dur(ours - small + small / r['share4'])}"
            self.add(row)


def reference_pgd(model, x, y, epsilon, steps, step_size) -> int:
    """pgd_whitebox() of the TRADES code: fp32, loss.backward() with parameter gradients
    on, and host reads of the error counts per batch."""
    err = (model(x).data.max(1)[1] != y.data).float().sum().item()
    x_pgd = x.data + torch.empty_like(x).uniform_(-epsilon, epsilon)
    x_pgd = x_pgd.clamp(0, 1).requires_grad_(True)
    for _ in range(steps):
        opt = torch.optim.SGD([x_pgd], lr=1e-3)
        opt.zero_grad()
        with torch.enable_grad():
            loss = torch.nn.CrossEntropyLoss()(model(x_pgd), y)
        loss.backward()
        x_pgd = x_pgd.data + step_size * x_pgd.grad.data.sign()
        eta = torch.clamp(x_pgd.data - x.data, -epsilon, epsilon)
        x_pgd = torch.clamp(x.data + eta, 0, 1.0).requires_grad_(True)
    err += (model(x_pgd).data.max(1)[1] != y.data).float().sum().item()
    model.zero_grad(set_to_none=True)
    return len(y)


# --- concurrent jobs (separate processes) -------------------------------------------------


def run_jobs(args, widths: list[int], rounds: list[list[int]]) -> list[list[dict]]:
    """One process per width, all started and warmed up first (so start-up overlaps and
    costs once); then in each round the listed processes time one window together."""
    argv = list(sys.argv[1:])
    if "--out" in argv:  # children write nothing
        i = argv.index("--out")
        del argv[i:i + 2]
    procs = [subprocess.Popen([sys.executable, __file__, *argv, "--job", str(w)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, bufsize=1) for w in widths]
    results: list[list[dict]] = []
    try:
        for p in procs:
            _expect(p, "ready")
        for active in rounds:
            for i in active:
                procs[i].stdin.write("go\n")
                procs[i].stdin.flush()
            results.append([_expect(procs[i], "result") for i in active])
        for p in procs:
            p.stdin.close()  # EOF: the child exits
            p.wait(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return results


def _expect(proc, kind: str) -> dict:
    for line in proc.stdout:
        if line.startswith("JOB "):
            msg = json.loads(line[4:])
            if msg["kind"] == kind:
                return msg
    raise RuntimeError(f"a concurrent job exited (code {proc.wait()}) before sending {kind!r}")


def job_main(args, sizes: Sizes) -> None:
    """A child process: one double-descent-style job (ResNet-18, Adam, batch dd_batch);
    warm up, say ready, then time a window at each "go" until stdin closes."""
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # the children share the cores
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    width = int(args.job)
    spec = Spec(f"job{width}", 18, width, sizes.dd_batch, "adam")
    job = ours_job(spec, make_data(sizes.images, 1, device), device)
    job.warm_up(sizes.warm_steps)
    sync(device)
    print("JOB " + json.dumps({"kind": "ready", "width": width}), flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        rate = job.rate(sizes.job_window)
        print("JOB " + json.dumps({"kind": "result", "width": width, "rate": rate, "peak_gib": peak_gib(device)}),
              flush=True)


# --- helpers and output --------------------------------------------------------------------


def _to_host(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_host(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_host(v) for v in obj)
    return obj


def _interp(points: list[tuple[int, float]], w: int) -> float:
    """Throughput at width ``w``, log-log between measured widths, clamped outside them
    (narrower than measured: the narrowest's rate, a slight underestimate)."""
    points = sorted(points)
    if w <= points[0][0]:
        return points[0][1]
    if w >= points[-1][0]:  # wider than measured (--cpu-smoke only): work grows as width squared
        return points[-1][1] * (points[-1][0] / w) ** 2
    for (w0, r0), (w1, r1) in zip(points, points[1:]):
        if w0 <= w <= w1:
            f = math.log(w / w0) / math.log(w1 / w0)
            return math.exp(math.log(r0) + f * (math.log(r1) - math.log(r0)))
    raise AssertionError


def _dur(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} GPU-days"


def _tflops(rate: float, flops: float | None) -> float | None:
    return rate * flops / 1e12 if flops else None


def _peak(ours: float | None, ref: float | None) -> str:
    f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    return "" if ours is None and ref is None else f"{f(ours)} / {f(ref)}"


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"
    return str(v)


def table(rows: list[Row]) -> str:
    head = ["row", "ours", "reference", "speedup", "ours TFLOP/s", "peak GiB ours/ref", "window s", "target / note"]
    body = [[r.row, _fmt(r.ours), _fmt(r.reference), f"{r.speedup:.2f}x" if r.speedup else "-",
             f"{r.tflops:.3g}" if r.tflops else "-", r.peak_gib or "-", r.window_s or "-", r.target or ""]
            for r in rows]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in body])


def describe(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    return (f"{name}; torch {torch.__version__}; {os.cpu_count()} CPUs; threads {torch.get_num_threads()}; "
            f"cudnn.benchmark {torch.backends.cudnn.benchmark}")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU: checks every row runs (< 1 min)")
    ap.add_argument("--out", help="also write the table to OUT.json and OUT.md")
    ap.add_argument("--ckpt-dir", default=".", help="where the timed checkpoint writes go (removed after)")
    ap.add_argument("--deadline", type=float, help="seconds for the whole run (default: 420 GPU, 90 smoke)")
    ap.add_argument("--compile-rows", help="all | none | comma list of rows (r34,r18w64,...) to also run compiled")
    ap.add_argument("--compile-mode", help="torch.compile mode (default, reduce-overhead, max-autotune, ...)")
    ap.add_argument("--only", help="comma list of sections: train,trades,pgd,share,compile,ablate (default: all)")
    ap.add_argument("--job", help=argparse.SUPPRESS)  # internal: a concurrent-job child process
    args = ap.parse_args()
    sizes = Sizes.smoke() if args.cpu_smoke else Sizes()
    if args.cpu_smoke:
        args.device = "cpu"
    if args.deadline:
        sizes.deadline = args.deadline
    if args.compile_rows:
        sizes.compile_rows = args.compile_rows
    if args.compile_mode and args.compile_mode != "default":
        sizes.compile_mode = args.compile_mode
    if args.job:
        return job_main(args, sizes)
    # gpu_check.sh's time limit sends SIGTERM (SIGINT may be ignored where the command runs in the
    # background): either one ends the measurements, and the rows measured so far are printed
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    sections = set((args.only or "train,trades,pgd,share,compile,ablate").split(","))
    bench = Bench(args, sizes)
    dev = bench.device
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as TrainingJob does (and the reference code)
    print(f"gpu_bench: {describe(dev)}; deadline {sizes.deadline:g} s", file=sys.stderr, flush=True)
    status = "complete"
    try:
        data = make_data(sizes.images, sizes.test_images, dev)
        all_specs = specs(sizes)
        chosen = [sp for sp in all_specs if sizes.compile_rows == "all" or sp.name in sizes.compile_rows.split(",")]
        steps = [("train", spec.label(), lambda sp=spec, i=i: bench.train_rows(sp, data, overhead=(i == 0)))
                 for i, spec in enumerate(all_specs)]
        steps += [("trades", "TRADES", lambda: bench.trades_row(data)), ("pgd", "PGD", lambda: bench.pgd_rows(data)),
                  ("share", "concurrent jobs", bench.sharing_rows)]
        # the target row compiled first, then its ablations, then the other rows compiled
        compiled = [("compile", f"{sp.label()} compiled", lambda sp=sp: bench.compiled_row(sp, data))
                    for sp in sorted(chosen, key=lambda sp: sp.name != "r34")]
        steps += compiled[:1] + [("ablate", f"ablation {what}", lambda what=what, v=v: bench.ablation_row(
            all_specs[0], data, what, v)) for what, v in ABLATIONS] + compiled[1:]
        for section, name, fn in steps:
            if section in sections:
                bench.guarded(name, fn)
    except KeyboardInterrupt:  # gpu_check.sh's hard limit: print what was measured
        status = "interrupted"
    bench.wall_rows()
    if bench.failures:
        status += f", {bench.failures} failed"
    print(bench.report(status), flush=True)
    sys.exit(0 if status == "complete" else 1)


if __name__ == "__main__":
    main()
