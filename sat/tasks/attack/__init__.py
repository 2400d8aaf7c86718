"""The attack task: natural and robust accuracy of one checkpoint or of a run's
per-epoch checkpoints, with a CSV, a printed table and a PNG curve."""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig

from sat.attacks import robust_accuracy
from sat.config import validate
from sat.config.build import USER_CONFIG
from sat.config.schema import read
from sat.errors import UserError
from sat.run.files import write_csv, write_json_atomic
from sat.run.folder import prepare_output_dir
from sat.tasks.context import choices, plain
from sat.tasks.device import resolve_device
from sat.tasks.evaluate import data_dir
from sat.tasks.evaluate.base import save_next_to_run
from sat.tasks.restore import restore_run, trusted_packages

_EPOCH_FILE = re.compile(r"epoch_(\d+)\.pt$")


class EpochRanges(tuple):
    """Epoch ranges ``((lo, hi), ...)``, inclusive: membership without materialising them
    (``epochs=1-99999999999`` is two numbers, not a set of 10**11)."""

    def __contains__(self, epoch: object) -> bool:
        return isinstance(epoch, int) and any(lo <= epoch <= hi for lo, hi in self)


def parse_epochs(spec: Any) -> EpochRanges | None:
    """``71-100``, ``80``, ``[71, 80]`` or ``"71,80,90-95"`` -> the epoch ranges; None: all."""
    if spec is None:
        return None
    parts = list(spec) if isinstance(spec, (list, tuple, ListConfig)) else str(spec).split(",")
    ranges = []
    for part in parts:
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(part))
        if m is None or isinstance(part, bool):
            raise UserError(f"epochs={spec!r} is not an epoch range; accepted: 71-100, 80, [71,80] or 71,80,90-95")
        lo, hi = int(m[1]), int(m[2] or m[1])
        if hi < lo:
            raise UserError(f"epochs={spec!r} has the reversed range {lo}-{hi}; accepted: low-high, e.g. {hi}-{lo}")
        ranges.append((lo, hi))
    return EpochRanges(ranges)


def select_checkpoints(checkpoint: str | None, checkpoints: str | None, epochs: Any) -> list[Path]:
    """One ``checkpoint``, or the ``epoch_N.pt`` files of a run folder / a glob,
    filtered by ``epochs`` and sorted by epoch."""
    if (checkpoint is None) == (checkpoints is None):
        raise UserError("give exactly one of checkpoint=FILE or checkpoints=RUN_DIR|GLOB")
    wanted = parse_epochs(epochs)  # checked with checkpoint= too: a bad value is never silently ignored
    if checkpoint is not None:
        if wanted is not None:
            raise UserError(f"epochs={epochs!r} selects among a run's checkpoints, but checkpoint={checkpoint} is one "
                            "file; accepted: checkpoints=RUN_DIR epochs=..., or checkpoint=FILE without epochs")
        return [Path(checkpoint)]
    root = Path(str(checkpoints)).expanduser()
    if root.is_dir():
        folder = root / "checkpoints" if (root / "checkpoints").is_dir() else root
        paths = [Path(p) for p in glob.glob(str(folder / "epoch_*.pt"))]
    else:
        paths = [Path(p) for p in glob.glob(str(root))]
    numbered = []
    for p in paths:
        m = _EPOCH_FILE.search(p.name)
        epoch = int(m[1]) if m else None
        if wanted is None or (epoch is not None and epoch in wanted):
            numbered.append((epoch if epoch is not None else -1, str(p), p))
    if not numbered:
        if not paths:
            where = f"{checkpoints!r} holds no checkpoints/epoch_N.pt" if root.is_dir() else \
                f"{checkpoints!r} is neither a run folder nor a glob matching checkpoint files"
            raise UserError(f"checkpoints={where}; accepted: a run folder trained with trainer.checkpoint_every=N, "
                            "or a glob such as RUN/checkpoints/epoch_*.pt")
        found = sorted(int(m[1]) for p in paths if (m := _EPOCH_FILE.search(p.name)))
        raise UserError(f"epochs={epochs!r} matches none of the checkpoints in {checkpoints!r}; accepted: epochs among "
                        f"{_ranges(found)}")
    return [p for _, _, p in sorted(numbered)]


def _ranges(epochs: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    parts, start = [], None
    for i, e in enumerate(epochs):
        if start is None:
            start = e
        if i + 1 == len(epochs) or epochs[i + 1] != e + 1:
            parts.append(f"{start}-{e}" if e != start else str(e))
            start = None
    return ", ".join(parts) or "none"


def run(cfg: DictConfig) -> dict[str, Any]:
    device = resolve_device(read(cfg, "device"))
    seed = validate.number("seed", read(cfg, "seed"), integer=True)
    batch_size = validate.positive_int("trainer.eval_batch_size", read(cfg, "trainer.eval_batch_size"))
    num_samples = read(cfg, "num_samples")
    if num_samples is not None:
        num_samples = validate.positive_int("num_samples", num_samples)
    paths = select_checkpoints(read(cfg, "checkpoint"), read(cfg, "checkpoints"), read(cfg, "epochs"))
    attacker = USER_CONFIG.build(cfg.attack, "attack")
    attack_name = choices().get("attack") or type(attacker).__name__
    out = prepare_output_dir(read(cfg, "paths.output_dir"))
    rows: list[dict[str, Any]] = []
    data_cache: dict = {}  # the checkpoints of one run share their data: load it once
    for path in paths:
        torch.manual_seed(seed)  # the same random starts for every checkpoint
        run = restore_run(path, device, data_dir(cfg), trusted_packages(cfg), data_cache)
        x, y = run.data.test.images, run.data.test.labels
        if num_samples is not None:
            x, y = x[:num_samples], y[:num_samples]
        x = x.float().div_(255)
        if hasattr(attacker, "evaluate"):  # AutoAttack reports each of its attacks too
            result = attacker.evaluate(run.model, x, y, batch_size)
        else:
            result = robust_accuracy(run.model, attacker, x, y, batch_size)
        rows.append({"checkpoint": str(path), "epoch": run.state["epoch"], "dataset": run.data.data.name,
                     "run_seed": run.seed, "noise": run.data.pattern.kind, "noise_rate": run.data.pattern.rate,
                     "attack": attack_name, "samples": len(y), **result, **strength(attacker)})
    best = max(rows, key=lambda r: r["robust"])
    _write_csv(rows, out / "robustness.csv")
    figures = _plot(rows, best, out / "robustness", attack_name) if len(rows) > 1 else []
    _print_table(rows, best)
    summary = {"attack": attack_name, "attack_config": plain(cfg.attack), "rows": rows, "best": best}
    write_json_atomic(out / "robustness.json", summary)
    beside = save_next_to_run(paths[0], f"robustness-{attack_name}.json", summary, stem=_covered(rows))
    print(f"results: {out / 'robustness.csv'}" + "".join(f", {f}" for f in figures)
          + (f" and {beside}" if beside else ""), flush=True)
    return summary


def strength(attacker: Any) -> dict[str, Any]:
    """What a robust accuracy means, written beside it in every table: the radius, and the
    step and steps of an iterative attack (eps 0.2 with PGD-20's 0.003 x 20 cannot move a
    pixel past 0.06)."""
    return {k: getattr(attacker, k) for k in ("eps", "step_size", "steps") if getattr(attacker, k, None) is not None}


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    write_csv(path, list(dict.fromkeys(k for r in rows for k in r)), rows)  # per-attack columns of AutoAttack too


def _covered(rows: list[dict[str, Any]]) -> str | None:
    """The name of a result over several checkpoints: the epochs it covers (``epochs_71-100``)."""
    if len(rows) < 2:
        return None
    return "epochs_" + _ranges(sorted({int(r["epoch"]) for r in rows})).replace(", ", "_")


_ROW_KEYS = ("checkpoint", "epoch", "dataset", "run_seed", "noise", "noise_rate", "attack", "samples", "natural",
             "robust", "eps", "step_size", "steps")


def _print_table(rows: list[dict[str, Any]], best: dict[str, Any]) -> None:
    # AutoAttack's accuracy left after each of its attacks, in the order they ran
    stages = [k for k in rows[0] if k not in _ROW_KEYS and isinstance(rows[0][k], float)]
    step = f" step_size={rows[0]['step_size']:.5g} steps={rows[0]['steps']}" if "step_size" in rows[0] else ""
    print(f"{'epoch':>6} {'natural':>8} " + "".join(f"{s:>9} " for s in stages) + f"{'robust':>8}  "
          f"eps={rows[0]['eps']:.5g}{step} ({rows[0]['attack']}, {rows[0]['samples']} test samples)")
    for r in rows:
        mark = "  <- best robust" if r is best and len(rows) > 1 else ""
        print(f"{r['epoch']:>6} {100 * r['natural']:7.2f}% " + "".join(f"{100 * r[s]:8.2f}% " for s in stages)
              + f"{100 * r['robust']:7.2f}%{mark}")


def _plot(rows: list[dict[str, Any]], best: dict[str, Any], stem: Path, attack_name: str) -> list[Path]:
    """Natural and robust accuracy against epoch, the best robust epoch marked; PNG and PDF."""
    from sat.run.figures import OKABE_ITO as PALETTE
    from sat.run.figures import pyplot, save

    plt = pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [100 * r["natural"] for r in rows], marker="o", color=PALETTE[0], label="natural")
    ax.plot(epochs, [100 * r["robust"] for r in rows], marker="s", color=PALETTE[1],
            label=f"robust ({attack_name}, eps {rows[0]['eps']:.4g})")
    ax.axvline(best["epoch"], color=PALETTE[1], ls="--", lw=1)
    ax.annotate(f"best robust: epoch {best['epoch']}, {100 * best['robust']:.2f}%", (best["epoch"], 100 * best["robust"]),
                xytext=(6, -14), textcoords="offset points", fontsize=8, color=PALETTE[1])
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save(fig, stem)
