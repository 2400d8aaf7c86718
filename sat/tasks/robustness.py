"""The attack task: natural and robust accuracy of one checkpoint or of a run's
per-epoch checkpoints, with a CSV, a printed table and a PNG curve."""

from __future__ import annotations

import csv
import glob
import json
import re
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig

from sat.attacks import robust_accuracy
from sat.errors import UserError
from sat.tasks.common import choices, plain, resolve_device, restore_run

_EPOCH_FILE = re.compile(r"epoch_(\d+)\.pt$")


def parse_epochs(spec: Any) -> set[int] | None:
    """``71-100``, ``80``, ``[71, 80]`` or ``"71,80,90-95"`` -> a set of epochs; None: all."""
    if spec is None:
        return None
    parts = list(spec) if isinstance(spec, (list, tuple, ListConfig)) else str(spec).split(",")
    epochs: set[int] = set()
    for part in parts:
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(part))
        if m is None:
            raise UserError(f"epochs={spec!r} is not an epoch range; accepted: 71-100, 80, [71,80] or 71,80,90-95")
        lo, hi = int(m[1]), int(m[2] or m[1])
        epochs.update(range(lo, hi + 1))
    return epochs


def select_checkpoints(checkpoint: str | None, checkpoints: str | None, epochs: Any) -> list[Path]:
    """One ``checkpoint``, or the ``epoch_N.pt`` files of a run folder / a glob,
    filtered by ``epochs`` and sorted by epoch."""
    if (checkpoint is None) == (checkpoints is None):
        raise UserError("give exactly one of checkpoint=FILE or checkpoints=RUN_DIR|GLOB")
    if checkpoint is not None:
        return [Path(checkpoint)]
    root = Path(checkpoints).expanduser()
    if root.is_dir():
        folder = root / "checkpoints" if (root / "checkpoints").is_dir() else root
        paths = [Path(p) for p in glob.glob(str(folder / "epoch_*.pt"))]
    else:
        paths = [Path(p) for p in glob.glob(str(root))]
    wanted = parse_epochs(epochs)
    numbered = []
    for p in paths:
        m = _EPOCH_FILE.search(p.name)
        epoch = int(m[1]) if m else None
        if wanted is None or (epoch is not None and epoch in wanted):
            numbered.append((epoch if epoch is not None else -1, str(p), p))
    if not numbered:
        raise UserError(f"checkpoints={checkpoints!r} epochs={epochs!r} matches no checkpoint file "
                        "(a run folder's checkpoints/epoch_N.pt, written with trainer.checkpoint_every=1)")
    return [p for _, _, p in sorted(numbered)]


def attack(cfg: DictConfig) -> dict[str, Any]:
    device = resolve_device(cfg.device)
    paths = select_checkpoints(cfg.checkpoint, cfg.checkpoints, cfg.epochs)
    attacker = instantiate(cfg.attack)
    attack_name = choices().get("attack") or type(attacker).__name__
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    data_cache: dict = {}  # the checkpoints of one run share their data: load it once
    for path in paths:
        torch.manual_seed(cfg.seed)  # the same random starts for every checkpoint
        state, run_cfg, nd, model = restore_run(str(path), device, cfg.dataset_root, data_cache)
        x, y = nd.data.test.images, nd.data.test.labels
        if cfg.num_samples is not None:
            x, y = x[: cfg.num_samples], y[: cfg.num_samples]
        x = x.float().div_(255)
        if hasattr(attacker, "evaluate"):  # AutoAttack reports each of its attacks too
            result = attacker.evaluate(model, x, y, cfg.batch_size)
        else:
            result = robust_accuracy(model, attacker, x, y, cfg.batch_size)
        rows.append({"checkpoint": str(path), "epoch": state["epoch"], "dataset": nd.data.name,
                     "run_seed": run_cfg.seed, "noise": nd.pattern.kind, "noise_rate": nd.pattern.rate,
                     "attack": attack_name, "samples": len(y), **result})
    best = max(rows, key=lambda r: r["robust"])
    _write_csv(rows, out / "robustness.csv")
    if len(rows) > 1:
        _plot(rows, out / "robustness.png", attack_name)
    _print_table(rows, best)
    print(f"results: {out / 'robustness.csv'}", flush=True)
    summary = {"attack": attack_name, "attack_config": plain(cfg.attack), "rows": rows, "best": best}
    (out / "robustness.json").write_text(json.dumps(summary, indent=2))
    return summary


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))  # per-attack columns of AutoAttack too
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _print_table(rows: list[dict[str, Any]], best: dict[str, Any]) -> None:
    print(f"{'epoch':>6} {'natural':>8} {'robust':>8}  eps={rows[0]['eps']:.5g} ({rows[0]['attack']}, "
          f"{rows[0]['samples']} test samples)")
    for r in rows:
        mark = "  <- best robust" if r is best and len(rows) > 1 else ""
        print(f"{r['epoch']:>6} {100 * r['natural']:7.2f}% {100 * r['robust']:7.2f}%{mark}")


def _plot(rows: list[dict[str, Any]], path: Path, attack_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [100 * r["natural"] for r in rows], marker="o", label="natural")
    ax.plot(epochs, [100 * r["robust"] for r in rows], marker="o", label=f"robust ({attack_name}, eps {rows[0]['eps']:.4g})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
