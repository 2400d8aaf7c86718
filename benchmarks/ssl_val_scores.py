"""Tuning helper for the SSL presets: the issue's two protocols with the **validation** split as queries,
so a recipe is chosen without looking at the test split (docs/results/ssl_digits_tuning_seed10_val.md).

    python benchmarks/ssl_val_scores.py RUN [RUN ...] [--random-init] [--data-dir DIR]

kNN: k 200, T 0.1, cosine, the run's training images as the bank; linear probe: 10 training labels per
class (seed 0), as ``evaluate.py report=linear_probe report.labels_per_class=10``; ``--random-init``: also the same
protocols on the architecture freshly initialised (seed 0). Prints one JSON line per run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from sat.ssl import backbone
from sat.ssl.knn import knn_accuracy
from sat.ssl.probe import linear_probe, select_labelled
from sat.tasks.evaluate.representation import random_init_model
from sat.tasks.restore import restore_run


def scores(model, nd) -> dict[str, float]:
    device = next(model.parameters()).device
    f_train, y_train = backbone.extract(model, nd.train.loader(1024, device=device))
    f_val, y_val = backbone.extract(model, nd.val.loader(1024, device=device))
    picked = select_labelled(nd.train.labels, None, 10, 0)
    return {"val_knn_pct": round(100 * knn_accuracy(f_train, y_train, f_val, y_val, nd.num_classes, 200, 0.1), 2),
            "val_probe_10_per_class_pct": round(100 * linear_probe(f_train[picked], y_train[picked].cpu(), f_val,
                                                                    y_val.cpu()), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--random-init", action="store_true")
    parser.add_argument("--data-dir", help="where the runs' dataset files are now (CIFAR: the folder holding "
                        "cifar-10-batches-py); not needed for the embedded digits")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for run in args.runs:
        restored = restore_run(run / "checkpoints" / "last.pt", torch.device("cpu"), args.data_dir)
        out = {"run": str(run), **scores(restored.model, restored.data)}
        if args.random_init:
            out["random_init"] = scores(random_init_model(restored, 0), restored.data)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
