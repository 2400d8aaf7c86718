"""Time one TRADES training step (attack + forward + backward + SGD step): ours
(sat.methods.TRADES) against the reference code's structure (Zhang et al.'s
trades.py), on the same model, batch and number of attack steps.

The reference recomputes the clean forward ``model(x_natural)`` inside every attack
step. ``--reference-grad backward`` (default) backpropagates the attack loss with
parameter gradients on (``loss_kl.backward()``, then ``x_adv.grad``);
``--reference-grad autograd`` is the published code's ``torch.autograd.grad(loss_kl,
[x_adv])``, which already lets autograd skip the weight gradients. Ours computes the
clean probabilities once and takes input gradients only.

    python benchmarks/trades_step.py --device cpu --batch-size 64 --width 16 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from sat.methods import TRADES
from sat.models import ResNet


def make_model(width: int) -> nn.Module:
    return ResNet(num_classes=10, input_shape=(3, 32, 32), depth=18, width=width)


def reference_step(
    model, optimizer, x_natural, y, step_size=0.007, epsilon=0.031, perturb_steps=10, beta=6.0, grad_mode="backward"
):
    """trades_loss() of github.com/yaodongyu/TRADES (and the SAT authors' losses/trades.py)."""
    criterion_kl = nn.KLDivLoss(reduction="sum")
    model.eval()
    x_adv = x_natural.detach() + 0.001 * torch.randn_like(x_natural).detach()
    for _ in range(perturb_steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss_kl = criterion_kl(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x_natural), dim=1))
        if grad_mode == "backward":  # parameter gradients on: fills every param's .grad too
            loss_kl.backward()
            grad = x_adv.grad
        else:  # what trades.py itself does: the engine prunes the weight-gradient work
            grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + step_size * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x_natural - epsilon), x_natural + epsilon)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    model.train()
    x_adv = x_adv.detach()
    optimizer.zero_grad()
    logits = model(x_natural)
    loss_natural = F.cross_entropy(logits, y)
    loss_robust = (1.0 / len(x_natural)) * criterion_kl(F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1))
    loss = loss_natural + beta * loss_robust
    loss.backward()
    optimizer.step()


def ours_step(method: TRADES, model, optimizer, x, y):
    optimizer.zero_grad(set_to_none=True)
    loss, _ = method(model, x, y, torch.arange(len(x), device=x.device), epoch=0)
    loss.backward()
    optimizer.step()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--width", type=int, default=16, help="ResNet-18 base width (64 = standard)")
    ap.add_argument("--steps", type=int, default=10, help="attack steps")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reference-grad", choices=["backward", "autograd"], default="backward")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = make_model(args.width).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(args.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    method = TRADES(steps=args.steps).to(device)
    steps = {
        "ours": lambda: ours_step(method, model, optimizer, x, y),
        "reference": lambda: reference_step(
            model, optimizer, x, y, perturb_steps=args.steps, grad_mode=args.reference_grad
        ),
    }
    for fn in steps.values():  # warm-up (allocator, cuDNN autotuning)
        fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.repeats):  # interleaved, so drift affects both alike
        for name, fn in steps.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"model={type(model).__name__} width={args.width} batch={args.batch_size} steps={args.steps} device={device} "
        f"threads={torch.get_num_threads()} repeats={args.repeats} reference-grad={args.reference_grad}"
    )
    print(f"ours      {med['ours'] * 1e3:9.1f} ms/step (median)")
    print(f"reference {med['reference'] * 1e3:9.1f} ms/step (median)")
    print(f"ratio ours/reference = {med['ours'] / med['reference']:.3f}")


if __name__ == "__main__":
    main()
