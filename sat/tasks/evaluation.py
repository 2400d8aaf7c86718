"""The evaluate task: a checkpoint's test accuracy and its memorisation of noisy labels."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sat.engine import accuracy_and_loss, evaluate as evaluate_model, predict
from sat.tasks.common import resolve_device, resolve_precision, restore_run


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test accuracy of a checkpoint, and where its run had label noise, accuracy on
    the clean and on the noisy-labelled training samples (memorisation)."""
    device = resolve_device(cfg.device)
    amp_dtype = resolve_precision(cfg.precision, device)
    state, run_cfg, nd, model = restore_run(cfg.checkpoint, device, cfg.dataset_root)
    test = evaluate_model(model, nd.data.test.images.to(device), nd.data.test.labels.to(device), cfg.batch_size, amp_dtype)
    result: dict[str, Any] = {
        "checkpoint": str(cfg.checkpoint), "epoch": state["epoch"], "dataset": nd.data.name, "run_seed": run_cfg.seed,
        "test/acc": test["acc"], "test/loss": test["loss"],
        "noise": {"kind": nd.pattern.kind, "rate": nd.pattern.rate, "seed": nd.pattern.seed,
                  "realised_error": nd.realised_error},
    }
    given, true = nd.train.labels, nd.true_train_labels
    noisy = given != true
    if bool(noisy.any()):
        logits = predict(model, nd.train.images.to(device), cfg.batch_size, amp_dtype).cpu()
        result["train_clean/acc"] = accuracy_and_loss(logits[~noisy], given[~noisy]).get("acc", math.nan)
        result["train_noisy/acc_given"] = accuracy_and_loss(logits[noisy], given[noisy])["acc"]
        result["train_noisy/acc_true"] = accuracy_and_loss(logits[noisy], true[noisy])["acc"]
        result["train_noisy/count"] = int(noisy.sum())
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(result, indent=2))
    rows = [("checkpoint", f"{cfg.checkpoint} (epoch {state['epoch']})"), ("test acc", f"{100 * result['test/acc']:.2f}%")]
    if "train_noisy/acc_given" in result:
        rows += [
            ("train acc, clean labels", f"{100 * result['train_clean/acc']:.2f}%"),
            ("train acc, noisy labels", f"{100 * result['train_noisy/acc_given']:.2f}% fit the given (wrong) label, "
                                        f"{100 * result['train_noisy/acc_true']:.2f}% predict the true one"),
        ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    print(json.dumps(result), flush=True)
    return result
