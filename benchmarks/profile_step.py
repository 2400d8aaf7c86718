"""Where a training step's time goes: torch.profiler over N steps of the real training
path (DeviceLoader + CropFlip + SAT or TRADES+SAT + EpochStats via
sat.engine.train_one_epoch; bf16 autocast and channels-last on CUDA), then the top ops
and kernels by self time on the CPU and on the device, and per-step counts.

    python benchmarks/profile_step.py                                   # CUDA: ResNet-34, batch 256
    python benchmarks/profile_step.py --model r18 --width 4 --batch 128 --optimizer adam
    python benchmarks/profile_step.py --method trades --model wrn --batch 128
    python benchmarks/profile_step.py --device cpu --width 4 --images 512 --batch 64 --steps 3 --warmup 1
    python benchmarks/profile_step.py --fused --compile inductor --compile-mode reduce-overhead
    python benchmarks/profile_step.py ... --trace step.json            # chrome://tracing / Perfetto

Reading it: on a GPU, "device busy" well under the step's wall time means the step is
launch- or host-bound (many small kernels: look at the op counts per step); close to it
means the kernels themselves are the cost (look at the top device kernels).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, schedule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_bench import OursJob, Spec, Variant, make_data, resnet, sync  # noqa: E402

from sat.methods import TRADES, SelfAdaptiveTraining  # noqa: E402
from sat.models import WideResNet, with_normalization  # noqa: E402


def build(args, data, device) -> OursJob:
    torch.manual_seed(0)
    if args.model == "wrn":
        model = with_normalization(WideResNet(10, (3, 32, 32), depth=args.depth or 34, width=args.width or 10),
                                   (0.5,) * 3, (0.25,) * 3)
    else:
        depth = 34 if args.model == "r34" else 18
        model = resnet(Spec(args.model, depth, args.width or 64, args.batch, args.optimizer))
    sat = SelfAdaptiveTraining(alpha=0.9, start_epoch=0)
    method = TRADES(natural=sat, steps=args.attack_steps) if args.method == "trades" else sat
    variant = Variant(compile_backend=args.compile if args.compile != "none" else None, compile_mode=args.compile_mode,
                      fused=args.fused, channels_last=not args.no_channels_last, amp=not args.fp32)
    return OursJob(model, method, data, args.batch, args.optimizer, device, variant)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", choices=["r18", "r34", "wrn"], default="r34")
    ap.add_argument("--width", type=int, help="ResNet base width (default 64) or WRN widening factor (default 10)")
    ap.add_argument("--depth", type=int, help="WRN depth (default 34)")
    ap.add_argument("--method", choices=["sat", "trades"], default="sat")
    ap.add_argument("--attack-steps", type=int, default=10)
    ap.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--steps", type=int, default=20, help="profiled steps")
    ap.add_argument("--warmup", type=int, default=10, help="steps before profiling (cudnn autotuning, compile)")
    ap.add_argument("--compile", default="none", help="torch.compile backend (inductor, eager) or none")
    ap.add_argument("--compile-mode", help="torch.compile mode, e.g. reduce-overhead (CUDA graphs)")
    ap.add_argument("--fused", action="store_true", help="fused optimizer step")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--trace", help="also write a Chrome trace here")
    ap.add_argument("--stack", action="store_true", help="record Python stacks and print the top ops by source line")
    args = ap.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    job = build(args, make_data(args.images, 1, device), device)
    job.warm_up(args.warmup)

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    # one step per profiler step: wait 1, record the rest
    with profile(activities=activities, schedule=schedule(wait=1, warmup=1, active=args.steps),
                 record_shapes=True, with_stack=args.stack) as prof:
        job._count = lambda _: (setattr(job, "steps", job.steps + 1), prof.step())
        sync(device)
        t0 = time.perf_counter()
        job.train(steps=args.steps + 2)
        sync(device)
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    n = args.steps
    name = f"{args.model} w{args.width or ('10' if args.model == 'wrn' else 64)} batch {args.batch} {args.method}"
    print(f"{name} on {device} ({torch.cuda.get_device_name(device) if cuda else 'CPU'}), torch {torch.__version__}; "
          f"{n} steps profiled; {wall / (n + 2) * 1e3:.1f} ms per step wall (profiler on)")
    cpu_ops = [e for e in events if e.key.startswith("aten::")]
    # ops called from Python (not from inside another aten op): what the step asks the dispatcher for
    outer = [e for e in prof.events() if e.name.startswith("aten::")
             and not (e.cpu_parent is not None and e.cpu_parent.name.startswith("aten::"))]
    print(f"aten ops per step: {len(outer) / n:.0f} called from Python, {sum(e.count for e in cpu_ops) / n:.0f} "
          f"with nested ones; host self time per step: {sum(e.self_cpu_time_total for e in events) / n / 1e3:.1f} ms")
    if cuda:
        # kernels, memcpys and memsets only: an op's device time repeats its kernels'
        dev_events = [e for e in events if getattr(e, "device_type", None) == DeviceType.CUDA]
        busy = sum(_self_device_us(e) for e in dev_events) / n
        print(f"device busy per step: {busy / 1e3:.1f} ms (sum of kernel times); kernels + copies per step: "
              f"{sum(e.count for e in dev_events) / n:.0f}")
        print("\n== top by self device time ==")
        print(events.table(sort_by="self_cuda_time_total" if _has("self_cuda_time_total", events)
                           else "self_device_time_total", row_limit=args.top))
    print("\n== top by self CPU time ==")
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.top))
    print("\n== most frequent aten ops (calls per step) ==")
    for e in sorted(cpu_ops, key=lambda e: -e.count)[: args.top]:
        print(f"{e.count / n:8.1f}  {e.key}")
    if args.stack:
        print("\n== top by self CPU time, by source line ==")
        print(prof.key_averages(group_by_stack_n=4).table(sort_by="self_cpu_time_total", row_limit=args.top))
    if args.trace:
        prof.export_chrome_trace(args.trace)
        print(f"trace: {args.trace}")


def _self_device_us(e) -> float:
    return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0) or 0


def _has(attr: str, events) -> bool:
    return all(hasattr(e, attr) for e in events[:1])


if __name__ == "__main__":
    main()
