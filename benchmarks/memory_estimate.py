"""The memory check's estimate of a training step (:func:`sat.tasks.budget.estimate`:
networks, gradients and optimizer buffers, the activations kept for backward, the
batch) against what one real step takes on this machine's CPU. Each combination runs in
its own fresh process: its peak resident memory (the kernel's high-water mark) over the
step, counted from before the model was built, is the measurement. The estimate is a
lower bound: the ratio must stay <= 1; the closer to 1, the more realistic.

    python benchmarks/memory_estimate.py                 # the default combinations
    python benchmarks/memory_estimate.py --combos cnn:32:32 resnet18:64:32 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT = ["cnn:32:32", "cnn:32:256", "mlp:32:256", "resnet18:32:64", "resnet18:64:32", "resnet18:96:16",
           "resnet34:32:64", "wrn:32:64", "vgg:32:64"]
MiB = 2 ** 20


def build(kind: str, size: int):
    from sat.models import MLP, ResNet, SmallCNN, WideResNet, with_normalization
    from sat.models.vgg import VGG

    shape = (3, size, size)
    nets = {"cnn": lambda: SmallCNN(num_classes=10, input_shape=shape, width=16),
            "mlp": lambda: MLP(num_classes=10, input_shape=shape, width=2048),
            "resnet18": lambda: ResNet(num_classes=10, input_shape=shape, depth=18, width=16),
            "resnet34": lambda: ResNet(num_classes=10, input_shape=shape, depth=34, width=32),
            "wrn": lambda: WideResNet(num_classes=10, input_shape=shape, depth=16, width=4),
            "vgg": lambda: VGG(num_classes=10, input_shape=shape, depth=11, width=16)}
    return lambda: with_normalization(nets[kind](), (0.5,) * 3, (0.25,) * 3), shape


def resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one(combo: str) -> dict:
    """One training step of ``combo`` (model:size:batch), in this process."""
    import torch
    import torch.nn.functional as F

    from sat.tasks.budget import estimate

    torch.set_num_threads(1)
    kind, size, batch = combo.split(":")
    size, batch = int(size), int(batch)
    make, shape = build(kind, size)
    need = estimate("train", build_model=make, input_shape=shape, batch_size=batch)
    x, y = torch.randint(0, 256, (batch, *shape), dtype=torch.uint8), torch.randint(0, 10, (batch,))
    before = resident()  # torch and the uint8 batch; the model, its gradients and Adam's buffers are counted
    model = make()
    optimizer = torch.optim.Adam(model.parameters())
    loss = F.cross_entropy(model(x.float().div_(255)), y)
    loss.backward()
    optimizer.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"combo": combo, "parameters": need.parameters, "estimate_mib": need.total / MiB,
            "parts_mib": {k: v / MiB for k, v in need.parts.items()}, "measured_mib": (peak - before) / MiB,
            "ratio": need.total / (peak - before)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--combos", nargs="+", default=DEFAULT, metavar="MODEL:SIZE:BATCH")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # (the child process's combination)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    env = dict(os.environ, OMP_NUM_THREADS="1")
    rows = []
    for combo in args.combos:
        proc = subprocess.run([sys.executable, __file__, "--one", combo], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{combo}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
        rows.append(json.loads(proc.stdout.splitlines()[-1]))
    print(f"one training step (Adam) per fresh process, 1 thread, load (1 min) {os.getloadavg()[0]:.1f}\n")
    print("| model:size:batch | parameters | estimate MiB | measured MiB | estimate / measured |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['combo']} | {r['parameters']:,} | {r['estimate_mib']:,.1f} | {r['measured_mib']:,.1f} | "
              f"{r['ratio']:.2f} |")
    if args.json:
        from sat.run.files import write_json_atomic

        write_json_atomic(Path(args.json), {"rows": rows})


if __name__ == "__main__":
    main()
