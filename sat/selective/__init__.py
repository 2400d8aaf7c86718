"""Selective classification evaluation: confidence scores, coverage thresholds found on
a calibration split, selective error, the risk-coverage curve and its area (AURC), and
the CSV / figure that compare several models.

Training methods with an abstain output live in :mod:`sat.methods.selective`.
"""

from sat.selective.evaluate import evaluate_model
from sat.selective.outputs import plot_risk_coverage, write_csv
from sat.selective.risk import (
    COVERAGES_PCT,
    CoveragePoint,
    SelectiveResult,
    aurc,
    calibration_split,
    coverage_threshold,
    evaluate_selective,
    optimal_aurc,
    risk_at_coverage,
    risk_coverage_curve,
    selective_risk,
)
from sat.selective.scores import confidence_scores, score_model, score_name

__all__ = [
    "COVERAGES_PCT",
    "CoveragePoint",
    "SelectiveResult",
    "aurc",
    "calibration_split",
    "confidence_scores",
    "coverage_threshold",
    "evaluate_model",
    "evaluate_selective",
    "optimal_aurc",
    "plot_risk_coverage",
    "risk_at_coverage",
    "risk_coverage_curve",
    "score_model",
    "score_name",
    "selective_risk",
    "write_csv",
]
