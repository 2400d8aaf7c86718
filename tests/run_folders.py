"""Hand-built run folders that follow the run-folder contract of ``train.py``, for the
report's unit tests: ``.hydra/{config,overrides,hydra}.yaml``, ``metrics.jsonl`` and
``summary.json`` with a status, written as the training code writes them, with values
chosen by the test (so every number in a report can be computed by hand)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

MODELS = {"mlp": "sat.models.MLP", "cnn": "sat.models.SmallCNN"}
NOISES = {"uniform": "sat.data.noise.UniformLabelNoise", "flip": "sat.data.noise.FlipLabelNoise"}
METHODS = {
    "ce": {"_target_": "sat.methods.CrossEntropy", "label_smoothing": 0.0},
    "sat": {"_target_": "sat.methods.SelfAdaptiveTraining", "alpha": 0.9, "start_epoch": 1, "width_scaling": False,
            "width": "${model.width}", "reference_width": 64},
}


def config(*, method: str, noise: str, rate: float, dataset: str, model: str, width: int, seed: int, epochs: int,
           val_size: int, device: str, num_threads: int | None, name: str, alpha: float = 0.9) -> dict[str, Any]:
    """A composed config as Hydra stores it: interpolations unresolved."""
    return {
        "name": name, "seed": seed, "device": device, "resume": None,
        "trainer": {"epochs": epochs, "batch_size": 128, "eval_batch_size": 1024, "precision": "auto",
                    "num_threads": num_threads, "checkpoint_every": 0, "checkpoint_from": 0},
        "paths": {"data_dir": "${oc.env:SAT_DATA_DIR,data}", "output_dir": "${hydra:runtime.output_dir}"},
        "dataset": {"_target_": f"sat.data.datasets.load_{dataset}", "val_size": val_size, "split_seed": 0},
        "model": {"_target_": MODELS[model], "width": width},
        "noise": {"_target_": NOISES[noise], "rate": rate, "seed": "${seed}", "from_file": None},
        "method": {**METHODS[method], **({"alpha": alpha} if method == "sat" else {})},
        "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.02, "momentum": 0.9},
    }


def make_run(
    root: Path, folder: str, *, method: str = "sat", noise: str = "uniform", rate: float = 0.2,
    dataset: str = "digits", model: str = "mlp", width: int = 16, seed: int = 0, epochs: int = 3,
    test_acc: list[float] | None = None, val_acc: list[float] | None = None, train_acc: list[float] | None = None,
    status: str = "finished", error: str | None = None, summary: bool = True, val_size: int = 200,
    device: str = "cpu", num_threads: int | None = 1, name: str = "exp", overrides: list[str] | None = None,
    effective: dict[str, Any] | None = None, params: int = 1234, alpha: float = 0.9,
) -> Path:
    """Write one run folder below ``root``; returns it. ``test_acc``/``val_acc``/``train_acc``:
    one value per completed epoch (their length is the number of epochs logged);
    ``val_size=0``: no validation split (no val metrics, ``at_best_val`` null)."""
    path = root / folder
    (path / ".hydra").mkdir(parents=True)
    test_acc = test_acc if test_acc is not None else [0.5, 0.6, 0.7][:epochs]
    train_acc = train_acc if train_acc is not None else [0.4 + 0.1 * i for i in range(len(test_acc))]
    val_acc = (val_acc if val_acc is not None else list(test_acc)) if val_size else None
    cfg = config(method=method, noise=noise, rate=rate, dataset=dataset, model=model, width=width, seed=seed,
                 epochs=epochs, val_size=val_size, device=device, num_threads=num_threads, name=name,
                 alpha=alpha)
    OmegaConf.save(OmegaConf.create(cfg), path / ".hydra" / "config.yaml")
    choices = {"debug": None, "experiment": name, "augment": "none", "optimizer": "sgd", "method": method,
               "noise": noise, "model": model, "dataset": dataset, "method_tuning@method": f"{name}-{method}",
               "hydra/launcher": "basic", "hydra/sweeper": "basic"}
    OmegaConf.save(OmegaConf.create({"hydra": {"runtime": {"choices": choices}}}), path / ".hydra" / "hydra.yaml")
    job = overrides if overrides is not None else [f"method={method}", f"noise.rate={rate}", f"seed={seed}"]
    OmegaConf.save(OmegaConf.create(job), path / ".hydra" / "overrides.yaml")

    history = []
    for i, test in enumerate(test_acc):
        m = {"epoch": i + 1, "lr": 0.02, "train/loss": 1.0, "train/acc": train_acc[i], "train/error": 1 - train_acc[i],
             "test/acc": test, "test/error": 1 - test}
        if val_acc is not None:
            m.update({"val/acc": val_acc[i], "val/error": 1 - val_acc[i]})
        history.append(m)
    (path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in history))
    if not summary:
        return path
    best = max(range(len(history)), key=lambda i: val_acc[i]) if val_acc and status == "finished" else None
    out = {
        "status": status, "name": name, "output_dir": str(path), "seed": seed, "epochs": epochs,
        "epochs_done": len(history) if status != "running" else 0, "params": params, "wall_time_s": 1.5,
        "choices": {k: str(v) for k, v in choices.items() if not k.startswith("hydra")},
        "method": effective if effective is not None else {k: v for k, v in METHODS[method].items()
                                                           if k in ("alpha", "start_epoch", "label_smoothing")},
        "noise": {"kind": noise, "rate": rate, "seed": seed, "realised_error": rate * 0.9, "num_noisy": 100,
                  "sha256": "0" * 64},
        "final": history[-1] if status == "finished" else {},
        "at_best_val": None if best is None else {"epoch": best + 1, "val/acc": val_acc[best],
                                                   "test/acc": test_acc[best]},
    }
    if error is not None:
        out["error"] = error
    (path / "summary.json").write_text(json.dumps(out, indent=2))
    return path
