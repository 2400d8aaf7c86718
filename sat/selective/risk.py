"""Coverage and selective risk: thresholds from a calibration split, the risk-coverage
curve and its area (AURC). Pure functions on score / correctness arrays.

A sample is *accepted* (predicted) when its score is >= the threshold, abstained on
otherwise. Coverage = fraction accepted; selective error (risk) = error rate among the
accepted. Coverages are fractions in [0, 1] here; files and figures show percent.

Ties: a threshold accepts every sample whose score equals it, so on the calibration
split the coverage is never below the one asked for. Rank-based quantities (the curve,
AURC, the error of the top-k) count tied samples as if their order were random: the
errors of a tied group are spread evenly over its positions, which makes them exact
expectations, independent of the input order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sat.errors import UserError

# The coverages (%) the selective-classification papers report (SelectiveNet, Deep Gamblers, SAT).
COVERAGES_PCT: tuple[float, ...] = (100, 99, 98, 97, 95, 90, 85, 80, 75, 70, 60, 50, 40, 30, 20, 10)


def _numpy(x) -> np.ndarray:
    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x).reshape(-1)


def _scores(scores) -> np.ndarray:
    """float64 scores from a tensor, array or list; NaN cannot be ranked."""
    s = _numpy(scores).astype(np.float64)
    if np.isnan(s).any():
        raise ValueError("scores contain NaN; a NaN cannot be ranked")
    return s


def _arrays(scores, correct) -> tuple[np.ndarray, np.ndarray]:
    """float64 scores and bool correctness."""
    s, c = _scores(scores), _numpy(correct).astype(bool)
    if len(s) != len(c):
        raise ValueError(f"{len(s)} scores but {len(c)} correctness values")
    return s, c


def _count(coverage: float, n: int) -> int:
    """How many of ``n`` samples a coverage keeps: round half up, at least one."""
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage={coverage} is out of range; accepted: 0 < coverage <= 1")
    return min(n, max(1, math.floor(coverage * n + 0.5)))


def coverage_threshold(scores, coverage: float) -> float:
    """The score threshold that accepts ``round(coverage * n)`` of these samples (more
    where samples tie with it). Full coverage gives ``-inf``: accept everything, also
    on another split whose scores may lie below this one's minimum."""
    s = _scores(scores)
    if len(s) == 0:
        raise ValueError("no scores to calibrate a threshold on")
    k = _count(coverage, len(s))
    if k == len(s):
        return -math.inf
    return float(np.sort(s)[::-1][k - 1])


def selective_risk(scores, correct, threshold: float) -> tuple[float, float]:
    """``(coverage, selective error)`` when samples with score >= ``threshold`` are
    accepted; the error is NaN where nothing is accepted."""
    s, c = _arrays(scores, correct)
    accepted = s >= threshold
    n_acc = int(accepted.sum())
    coverage = n_acc / len(s) if len(s) else math.nan
    return coverage, (1.0 - float(c[accepted].mean())) if n_acc else math.nan


def expected_cumulative_errors(scores, correct) -> np.ndarray:
    """``E[k-1]`` = expected number of errors among the ``k`` highest-scored samples,
    k = 1..n, with tied scores in random order (see the module note)."""
    s, c = _arrays(scores, correct)
    order = np.argsort(-s, kind="stable")
    err = (~c[order]).astype(np.float64)
    if len(err) == 0:
        return err
    _, starts, sizes = np.unique(-s[order], return_index=True, return_counts=True)  # groups, best first
    group_err = np.add.reduceat(err, starts)
    before = np.concatenate([[0.0], np.cumsum(group_err)[:-1]])
    group = np.repeat(np.arange(len(sizes)), sizes)
    position = np.arange(len(err)) - starts[group] + 1  # 1-based place within its group
    return before[group] + position * group_err[group] / sizes[group]


def risk_coverage_curve(scores, correct) -> tuple[np.ndarray, np.ndarray]:
    """Coverage ``k / n`` and selective error of the top ``k`` samples, k = 1..n."""
    cum = expected_cumulative_errors(scores, correct)
    k = np.arange(1, len(cum) + 1, dtype=np.float64)
    return k / max(len(cum), 1), cum / k


def risk_at_coverage(scores, correct, coverage: float) -> float:
    """Selective error of the top ``round(coverage * n)`` samples of this split, ranked
    by score: what the reference code reports per split (no separate calibration)."""
    cum = expected_cumulative_errors(scores, correct)
    k = _count(coverage, len(cum))
    return float(cum[k - 1] / k)


def aurc(scores, correct) -> float:
    """Area under the risk-coverage curve: the mean of the top-k selective error over
    k = 1..n (Geifman et al. 2019). Lower is better; a random score gives about the
    overall error rate."""
    _, risk = risk_coverage_curve(scores, correct)
    return float(risk.mean()) if len(risk) else math.nan


def optimal_aurc(correct) -> float:
    """The AURC of a perfect score (every error ranked below every correct sample): the
    floor that E-AURC = AURC - optimal AURC measures from."""
    c = _numpy(correct).astype(bool)
    return aurc(c.astype(np.float64), c)


def calibration_split(n: int, size: int = 2000, seed: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(calibration, evaluation)``: a seeded shuffle of ``range(n)``, the first
    ``size`` for calibration and the rest for evaluation. The defaults are the reference
    code's (Python's ``random`` shuffled with seed 10, the first 2,000 test images), so
    the two splits are the same images as there, given the same test order."""
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size < n:
        raise UserError(key="calibration_size", value=size, problem="is out of range",
                        accepted=f"an integer with 0 < {{key}} < {n}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return np.asarray(order[:size], dtype=np.int64), np.asarray(order[size:], dtype=np.int64)


@dataclass(frozen=True)
class CoveragePoint:
    """One target coverage: the threshold found on the calibration split and what it
    gives on the evaluation split. Fractions in [0, 1]."""

    target: float
    threshold: float
    calibration_coverage: float
    calibration_error: float
    coverage: float  # realised on the evaluation split
    selective_error: float  # on the evaluation split, at that threshold
    sorted_error: float  # the evaluation split's own top-``target`` error (the references' number)


@dataclass
class SelectiveResult:
    """A model's selective-classification evaluation, ready for the CSV and the figure.

    ``meta`` names what produced it (checkpoint, epoch, method, score, seed ...) and
    becomes leading CSV columns; ``curve`` is the evaluation split's risk-coverage curve.
    """

    name: str
    points: list[CoveragePoint]
    aurc: float
    eaurc: float
    error: float  # at full coverage, on the evaluation split
    n_calibration: int
    n_eval: int
    curve: tuple[np.ndarray, np.ndarray]
    meta: dict[str, str | int | float]


def evaluate_selective(
    name: str,
    calibration: tuple,
    evaluation: tuple,
    coverages_pct: Sequence[float] = COVERAGES_PCT,
    meta: dict | None = None,
) -> SelectiveResult:
    """Thresholds for each target coverage (percent) from ``calibration = (scores,
    correct)``, applied to ``evaluation = (scores, correct)``; plus the evaluation
    split's AURC, E-AURC and risk-coverage curve."""
    cal_s, cal_c = _arrays(*calibration)
    ev_s, ev_c = _arrays(*evaluation)
    if len(cal_s) == 0 or len(ev_s) == 0:
        raise ValueError(f"need samples in both splits, got {len(cal_s)} calibration and {len(ev_s)} evaluation")
    points = []
    for pct in coverages_pct:
        target = float(pct) / 100.0
        tau = coverage_threshold(cal_s, target)
        cal_cov, cal_err = selective_risk(cal_s, cal_c, tau)
        cov, err = selective_risk(ev_s, ev_c, tau)
        points.append(CoveragePoint(target, tau, cal_cov, cal_err, cov, err, risk_at_coverage(ev_s, ev_c, target)))
    area = aurc(ev_s, ev_c)
    return SelectiveResult(
        name=name, points=points, aurc=area, eaurc=area - optimal_aurc(ev_c), error=1.0 - float(ev_c.mean()),
        n_calibration=len(cal_s), n_eval=len(ev_s), curve=risk_coverage_curve(ev_s, ev_c), meta=dict(meta or {}),
    )
