"""Label-error detection quality on constructed cases with known answers."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from sat.label_errors.detection import (
    auroc,
    average_ranks,
    detection_quality,
    disagreement_from_logits,
    disagreement_with_given,
    flag_quality,
    flags_from_argmax,
    soft_label_detection,
)

T = torch.tensor


def pairwise_auroc(scores, wrong):
    """By definition: over all (wrong, right) pairs, 1 if the wrong one scores higher, 1/2 on a tie."""
    pos = [s for s, w in zip(scores, wrong) if w]
    neg = [s for s, w in zip(scores, wrong) if not w]
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)) / (len(pos) * len(neg))


def test_perfect_reversed_and_tied_rankings():
    wrong = T([True, True, False, False, False])
    assert auroc(T([0.9, 0.8, 0.3, 0.2, 0.1]), wrong) == 1.0
    assert auroc(T([0.1, 0.2, 0.3, 0.8, 0.9]), wrong) == 0.0
    assert auroc(T([0.5] * 5), wrong) == 0.5


def test_hand_made_case_with_a_tie_across_classes():
    # pairs: 0.9 beats all three right ones (3); 0.8 ties 0.8 (1/2), beats 0.3 and 0.1 (2) -> 5.5 / 6
    scores, wrong = T([0.9, 0.8, 0.8, 0.3, 0.1]), T([True, False, True, False, False])
    assert auroc(scores, wrong) == pytest.approx(5.5 / 6, abs=1e-12)


def test_matches_the_pairwise_definition_on_random_data_with_many_ties():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (300,), generator=g).float() / 5  # only 6 distinct values
    wrong = torch.rand(300, generator=g) < 0.3
    assert auroc(scores, wrong) == pytest.approx(pairwise_auroc(scores.tolist(), wrong.tolist()), abs=1e-12)


def test_average_ranks_share_the_mean_of_tied_positions():
    assert average_ranks(T([3.0, 1.0, 3.0, 2.0, 3.0])).tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]


def test_auroc_is_undefined_without_both_classes():
    assert math.isnan(auroc(T([0.1, 0.2]), T([False, False])))
    assert math.isnan(auroc(T([0.1, 0.2]), T([True, True])))
    with pytest.raises(ValueError, match="NaN"):
        auroc(T([0.1, float("nan")]), T([True, False]))


def test_flag_quality_by_hand():
    # flagged {0, 1, 2}, wrong {1, 2, 3, 4}: 2 hits -> precision 2/3, recall 2/4, F1 = 2PR/(P+R) = 4/7
    flagged = T([True, True, True, False, False, False])
    wrong = T([False, True, True, True, True, False])
    q = flag_quality(flagged, wrong)
    assert q["precision"] == pytest.approx(2 / 3) and q["recall"] == pytest.approx(0.5)
    assert q["f1"] == pytest.approx(4 / 7)


def test_flag_quality_edge_cases():
    assert flag_quality(T([False, False]), T([True, False])) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    q = flag_quality(T([True, False]), T([False, False]))
    assert q["precision"] == 0.0 and math.isnan(q["recall"])
    with pytest.raises(ValueError, match="entries"):
        flag_quality(T([True]), T([True, False]))


def test_scores_from_soft_targets_and_from_logits():
    soft = T([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25]])
    given = T([0, 1, 1])
    assert disagreement_with_given(soft, given).tolist() == pytest.approx([0.3, 0.7, 0.5])
    logits = T([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    p0 = math.exp(0.0) / (math.exp(2.0) + 1 + math.exp(-1.0))
    assert disagreement_from_logits(logits, T([1, 2])).tolist() == pytest.approx([1 - p0, 2 / 3], abs=1e-12)
    assert flags_from_argmax(soft, given).tolist() == [False, True, False]


def test_soft_label_detection_end_to_end():
    # given labels 0,1,1,2; true labels 0,2,1,0: samples 1 and 3 are wrong
    soft = T([[0.9, 0.05, 0.05], [0.1, 0.2, 0.7], [0.2, 0.6, 0.2], [0.45, 0.1, 0.45]])
    given, true = T([0, 1, 1, 2]), T([0, 2, 1, 0])
    q = soft_label_detection(soft, given, given != true)
    # scores 0.1, 0.8, 0.4, 0.55: both wrong ones above both right ones; flagged: 1 and 3
    # (sample 3's tie 0.45 / 0.45 goes to the first class, 0 != 2)
    assert q["auroc"] == 1.0
    assert flags_from_argmax(soft, given).tolist() == [False, True, False, True]
    assert (q["precision"], q["recall"], q["f1"]) == (1.0, 1.0, 1.0)
    assert detection_quality(T([0.1, 0.8, 0.4, 0.55]), given != true, T([False] * 4))["recall"] == 0.0
