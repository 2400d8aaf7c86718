"""``report=selective``: selective classification of one or several checkpoints side by
side: selective error at the standard coverages, thresholds set on the run's validation
split (or, without one, on ``calibration_size`` test images held apart), the area under
the risk-coverage curve, a CSV and one figure for all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sat.config import validate
from sat.run.files import write_json_atomic
from sat.run.folder import RunFolder
from sat.selective.evaluate import evaluate_model as selective_evaluation
from sat.selective.outputs import plot_risk_coverage, write_csv
from sat.selective.risk import SelectiveResult
from sat.tasks.evaluate.base import Evaluation, Report
from sat.tasks.restore import RestoredRun


def method_name(run: RestoredRun, checkpoint: Path) -> str:
    """The run's ``method`` option (from its summary.json), else its class name."""
    summary = RunFolder(RunFolder.of_checkpoint(checkpoint, record=False)).summary_file
    try:
        choice = json.loads(summary.read_text()).get("choices", {}).get("method")
    except (OSError, ValueError):
        choice = None
    return str(choice or str((run.config.get("method") or {}).get("_target_", "?")).rsplit(".", 1)[-1])


class SelectiveReport(Report):
    name = "selective"
    takes_several = True

    def __init__(self, calibration_size: int = 2000, calibration_seed: int = 10):
        self.calibration_size = validate.positive_int("calibration_size", calibration_size)
        self.calibration_seed = validate.number("calibration_seed", calibration_seed, integer=True)

    def __call__(self, evaluation: Evaluation) -> dict[str, Any]:
        runs, out, batch_size, amp_dtype = evaluation.runs, evaluation.out, evaluation.batch_size, evaluation.amp_dtype
        calibration_size, calibration_seed = self.calibration_size, self.calibration_seed
        results: list[SelectiveResult] = []
        for checkpoint, run in runs:
            nd, device = run.data, next(run.model.parameters()).device
            calibration = (nd.val.images.to(device), nd.val.labels.to(device)) if nd.val is not None and len(nd.val) else None
            name = f"{method_name(run, checkpoint)} (epoch {run.state['epoch']})"
            results.append(selective_evaluation(
                name, run.model, nd.data.num_classes, (nd.test.images.to(device), nd.test.labels.to(device)),
                calibration, calibration_size, calibration_seed, batch_size=batch_size, amp_dtype=amp_dtype,
                meta={"checkpoint": str(checkpoint), "epoch": run.state["epoch"], "run_seed": run.seed,
                      "dataset": nd.data.name, "noise": nd.pattern.kind, "noise_rate": nd.pattern.rate}))
        files = [write_csv(out / "selective.csv", results), *plot_risk_coverage(results, out / "risk_coverage")]
        width = max(len(r.name) for r in results)
        print(f"{'':<{width}}  {'cov%':>5} " + " ".join(f"{round(100 * p.target):>5}" for p in results[0].points))
        for r in results:
            print(f"{r.name:<{width}}  {'err%':>5} " + " ".join(f"{100 * p.selective_error:5.1f}" for p in r.points)
                  + f"   AURC {100 * r.aurc:.2f}%  ({r.meta['score']} score, calibration: {r.meta['calibration']})")
        summary = {"report": "selective", "test/acc": 1.0 - results[0].error, "files": [str(f) for f in files],
                   "results": [{"name": r.name, "aurc": r.aurc, "eaurc": r.eaurc, "error": r.error, **r.meta,
                                "selective_error": {f"{round(100 * p.target)}": p.selective_error for p in r.points},
                                "coverage": {f"{round(100 * p.target)}": p.coverage for p in r.points}}
                               for r in results]}
        write_json_atomic(out / "selective.json", summary)
        print("results: " + ", ".join(map(str, [out / "selective.json", *files])), flush=True)
        return summary
