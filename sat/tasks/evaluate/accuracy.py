"""``report=accuracy``: a checkpoint's test accuracy and, where its run had label noise,
its memorisation (accuracy on the clean and on the noisy-labelled training samples)."""

from __future__ import annotations

import json
import math
from typing import Any

import torch

from sat.engine import accuracy_and_loss, predict
from sat.run.files import write_json_atomic
from sat.tasks.evaluate.base import Evaluation, Report, print_rows, save_next_to_run


class AccuracyReport(Report):
    name = "accuracy"
    needs_images_on_device = False

    def __call__(self, evaluation: Evaluation) -> dict[str, Any]:
        checkpoint, run = evaluation.runs[0]
        nd, model, out = run.data, run.model, evaluation.out
        classes = nd.num_classes  # an abstaining model's extra output is not a class

        def logits_of(split) -> torch.Tensor:
            loader = split.loader(evaluation.batch_size, device=run.device)
            return predict(model, loader, evaluation.amp_dtype)[0][:, :classes].cpu()

        test = accuracy_and_loss(logits_of(nd.test), nd.test.labels)
        result: dict[str, Any] = {
            "checkpoint": str(checkpoint), "epoch": run.state["epoch"], "dataset": nd.data.name, "run_seed": run.seed,
            "test/acc": test["acc"], "test/loss": test["loss"], "noise": nd.noise_summary(),
        }
        given, true = nd.train.labels, nd.true_train_labels
        noisy = given != true if true is not None else torch.zeros_like(given, dtype=torch.bool)
        if bool(noisy.any()):
            logits = logits_of(nd.train)
            result["train_clean/acc"] = accuracy_and_loss(logits[~noisy], given[~noisy]).get("acc", math.nan)
            result["train_noisy/acc_given"] = accuracy_and_loss(logits[noisy], given[noisy])["acc"]
            result["train_noisy/acc_true"] = accuracy_and_loss(logits[noisy], true[noisy])["acc"]
            result["train_noisy/count"] = int(noisy.sum())
        write_json_atomic(out / "evaluation.json", result)
        beside = save_next_to_run(checkpoint, "evaluation.json", result)
        rows = [("checkpoint", f"{checkpoint} (epoch {run.state['epoch']})"),
                ("test acc", f"{100 * result['test/acc']:.2f}%")]
        if "train_noisy/acc_given" in result:
            rows += [
                ("train acc, clean labels", f"{100 * result['train_clean/acc']:.2f}%"),
                ("train acc, noisy labels", f"{100 * result['train_noisy/acc_given']:.2f}% fit the given (wrong) "
                                            f"label, {100 * result['train_noisy/acc_true']:.2f}% predict the true one"),
            ]
        rows.append(("results", f"{out / 'evaluation.json'}" + (f" and {beside}" if beside else "")))
        print_rows(rows)
        print(json.dumps(result), flush=True)
        return result
