"""Coverage-risk evaluation: thresholds, selective error, AURC, scores, files."""

from __future__ import annotations

import csv
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from sat.errors import UserError
from sat.selective import (
    COVERAGES_PCT,
    aurc,
    calibration_split,
    confidence_scores,
    coverage_threshold,
    evaluate_selective,
    optimal_aurc,
    plot_risk_coverage,
    risk_at_coverage,
    risk_coverage_curve,
    score_model,
    score_name,
    selective_risk,
    write_csv,
)
from sat.selective.risk import expected_cumulative_errors


def test_coverages_are_the_papers():
    assert COVERAGES_PCT == (100, 99, 98, 97, 95, 90, 85, 80, 75, 70, 60, 50, 40, 30, 20, 10)


def test_thresholds_hit_every_requested_coverage_on_distinct_scores():
    scores = np.random.default_rng(0).permutation(1000).astype(float)
    for pct in COVERAGES_PCT:
        tau = coverage_threshold(scores, pct / 100)
        coverage, _ = selective_risk(scores, np.ones(1000), tau)
        assert coverage == pct / 100, pct


def test_ties_are_all_accepted_whatever_the_input_order():
    scores = np.array([5, 5, 5, 4, 4, 3, 3, 3, 3, 1], dtype=float)
    correct = np.ones(10, dtype=bool)
    cases = {0.5: (4.0, 0.5), 0.4: (4.0, 0.5), 0.6: (3.0, 0.9), 0.1: (5.0, 0.3), 1.0: (-math.inf, 1.0)}
    rng = np.random.default_rng(1)
    for target, (tau, coverage) in cases.items():
        for _ in range(3):  # the same threshold for any order of the same scores
            shuffled = rng.permutation(scores)
            assert coverage_threshold(shuffled, target) == tau
        assert selective_risk(scores, correct, tau)[0] == coverage  # never less than asked


def test_full_coverage_accepts_scores_below_the_calibration_minimum():
    tau = coverage_threshold([0.5, 0.7, 0.9], 1.0)
    assert selective_risk([0.1, 0.2], [True, False], tau) == (1.0, 0.5)


def test_selective_error_by_hand():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    correct = [1, 0, 1, 1, 0]
    assert selective_risk(scores, correct, 0.65) == (0.6, pytest.approx(1 / 3))  # keeps 0.9, 0.8 (wrong), 0.7
    assert selective_risk(scores, correct, 0.95) == (0.0, pytest.approx(float("nan"), nan_ok=True))
    assert risk_at_coverage(scores, correct, 0.4) == 0.5  # top 2: one error
    assert risk_at_coverage(scores, correct, 1.0) == 0.4


def test_calibrated_thresholds_applied_to_the_other_split_by_hand():
    cal = (np.arange(10, dtype=float), np.ones(10))  # scores 0..9
    ev_scores = np.array([9.5, 8.5, 7.5, 6.5, 5.5, 4.5])
    ev_correct = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
    r = evaluate_selective("m", cal, (ev_scores, ev_correct), coverages_pct=[100, 50, 20])
    p100, p50, p20 = r.points
    assert (p100.threshold, p100.coverage, p100.selective_error) == (-math.inf, 1.0, 0.5)
    # 50% of the calibration split: scores >= 5 -> evaluation keeps 9.5 .. 5.5 (5 of 6, 2 errors)
    assert p50.threshold == 5.0 and p50.calibration_coverage == 0.5
    assert p50.coverage == pytest.approx(5 / 6) and p50.selective_error == pytest.approx(2 / 5)
    # 20%: scores >= 8 -> 9.5, 8.5, both right; the evaluation split's own top 20% (1 sample) too
    assert p20.threshold == 8.0 and p20.coverage == pytest.approx(2 / 6) and p20.selective_error == 0.0
    assert p20.sorted_error == 0.0 and p50.sorted_error == pytest.approx(1 / 3)
    assert r.error == 0.5 and (r.n_calibration, r.n_eval) == (10, 6)


def test_expected_errors_spread_over_a_tied_group():
    # groups: {2}: right; {1, 1}: one error between them; {0}: an error
    cum = expected_cumulative_errors([1.0, 2.0, 0.0, 1.0], [False, True, False, True])
    assert cum.tolist() == [0.0, 0.5, 1.0, 2.0]


def test_aurc_of_a_perfect_ranking_by_hand_and_of_random_and_reversed_ones():
    correct = np.array([1] * 8 + [0] * 2, dtype=bool)
    perfect = np.linspace(1, 0, 10)  # errors scored lowest
    assert aurc(perfect, correct) == pytest.approx((1 / 9 + 2 / 10) / 10, rel=1e-12)
    assert optimal_aurc(correct) == pytest.approx(aurc(perfect, correct), rel=1e-12)
    assert aurc(-perfect, correct) > aurc(perfect, correct)  # errors scored highest: worst
    assert aurc(np.zeros(10), correct) == pytest.approx(0.2, rel=1e-12)  # all tied: exactly the error rate

    rng = np.random.default_rng(0)
    big = rng.random(20000) > 0.3  # 30% errors
    assert aurc(rng.random(20000), big) == pytest.approx(1 - big.mean(), abs=0.02)  # random: ~the error rate
    assert optimal_aurc(big) < 0.1


def test_risk_coverage_curve_ends_at_the_error_rate():
    cov, risk = risk_coverage_curve([3.0, 2.0, 1.0, 0.0], [True, False, True, False])
    assert cov.tolist() == [0.25, 0.5, 0.75, 1.0] and risk.tolist() == pytest.approx([0, 0.5, 1 / 3, 0.5])


def test_scores_of_plain_and_abstention_logits_by_hand():
    z = torch.tensor([[1.0, 3.0, 0.0], [2.0, 0.0, 0.5]], dtype=torch.float64)
    scores, pred = confidence_scores(z, num_classes=3)  # max-softmax
    p = z.softmax(1)
    assert torch.allclose(scores, p.max(1).values.log(), rtol=1e-12) and pred.tolist() == [1, 0]

    za = torch.tensor([[1.0, 3.0, 0.0, 5.0], [2.0, 0.0, 0.5, -1.0]], dtype=torch.float64)  # last = abstain
    scores, pred = confidence_scores(za, num_classes=3)
    p = za.softmax(1)
    assert torch.allclose(scores, (1 - p[:, 3]).log(), rtol=1e-12)
    assert pred.tolist() == [1, 0]  # argmax over the classes, though abstain is the largest in row 0
    assert score_name(4, 3) == "abstain" and score_name(3, 3) == "max_softmax"
    with pytest.raises(ValueError, match="fit neither"):
        confidence_scores(torch.zeros(2, 5), num_classes=3)


def test_tiny_probabilities_still_rank():
    # p_abstain ~ e^-40 and e^-41: 1 - p is 1.0 for both in float64; log(1 - p) is not
    z = torch.tensor([[0.0, 0.0, -40.0], [0.0, 0.0, -41.0]])
    scores, _ = confidence_scores(z, num_classes=2)
    assert scores[1] > scores[0] and scores[0].item() == pytest.approx(-math.exp(-40) / 2, rel=1e-6, abs=0)
    # the same for the max-softmax of a plain classifier: 1 - max p ~ e^-40 vs e^-41
    scores, _ = confidence_scores(torch.tensor([[40.0, 0.0], [41.0, 0.0]]), num_classes=2)
    assert scores[1] > scores[0] and scores[0].item() == pytest.approx(-math.exp(-40), rel=1e-6, abs=0)


def test_score_model_matches_its_logits():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3 + 1))
    images = torch.randint(0, 256, (5, 1, 2, 2), dtype=torch.uint8)
    scores, pred = score_model(model, images, num_classes=3, batch_size=2)
    with torch.no_grad():
        expected = confidence_scores(model(images.float() / 255), 3)
    assert torch.allclose(scores, expected[0], rtol=1e-6) and torch.equal(pred, expected[1])


def test_calibration_split_is_the_references_shuffle():
    cal, ev = calibration_split(10000)
    order = list(range(10000))
    random.Random(10).shuffle(order)  # the reference: random.seed(10); random.shuffle(...)
    assert cal.tolist() == order[:2000] and ev.tolist() == order[2000:]
    assert sorted(cal.tolist() + ev.tolist()) == list(range(10000))
    with pytest.raises(UserError, match="calibration_size=497") as e:
        calibration_split(497, size=497)
    assert "\n" not in str(e.value)


def test_csv_and_figure_for_two_models(tmp_path):
    rng = np.random.default_rng(0)
    correct = rng.random(600) > 0.2
    cal, ev = calibration_split(600, size=200, seed=0)
    results = []
    for name, noise in (("sat_selective", 0.5), ("ce max-softmax", 2.0)):
        scores = correct + noise * rng.standard_normal(600)  # errors score lower, more or less clearly
        results.append(evaluate_selective(name, (scores[cal], correct[cal]), (scores[ev], correct[ev]),
                                          meta={"checkpoint": f"{name}.pt", "epoch": 3}))
    assert results[0].aurc < results[1].aurc  # the sharper score ranks the errors better
    path = write_csv(tmp_path / "selective.csv", results)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 2 * len(COVERAGES_PCT) and list(rows[0])[:3] == ["checkpoint", "epoch", "name"]
    first = rows[0]
    assert first["name"] == "sat_selective" and float(first["target_coverage_pct"]) == 100.0
    assert float(first["coverage_pct"]) == 100.0 and int(first["n_eval"]) == 400
    assert float(first["selective_error_pct"]) == pytest.approx(100 * results[0].error, abs=1e-3)
    assert float(first["aurc_pct"]) == pytest.approx(100 * results[0].aurc, abs=1e-3)
    png, pdf = plot_risk_coverage(results, tmp_path / "fig" / "risk_coverage", title="digits")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"


def test_evaluate_model_with_and_without_a_calibration_set():
    from sat.selective import evaluate_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3 + 1)).eval()
    images = torch.randint(0, 256, (50, 1, 2, 2), dtype=torch.uint8)
    labels = torch.randint(0, 3, (50,))
    with torch.no_grad():
        scores, pred = confidence_scores(model(images.float() / 255), 3)
    correct = pred == labels

    split = evaluate_model("m", model, 3, (images, labels), calibration_size=20, calibration_seed=1,
                           coverages_pct=[100, 50], meta={"epoch": 7})
    cal, ev = calibration_split(50, 20, seed=1)
    by_hand = evaluate_selective("m", (scores[cal], correct[cal]), (scores[ev], correct[ev]), [100, 50])
    assert split.points == by_hand.points and split.aurc == by_hand.aurc  # same numbers, computed the same way
    assert split.meta["score"] == "abstain" and split.meta["epoch"] == 7 and split.n_eval == 30

    given = evaluate_model("m", model, 3, (images[20:], labels[20:]), calibration=(images[:20], labels[:20]),
                           coverages_pct=[50])
    assert given.n_calibration == 20 and given.n_eval == 30
    assert given.points[0].threshold == coverage_threshold(scores[:20], 0.5)
