"""Calibration and uncertainty metrics against hand-computed cases."""

from __future__ import annotations

import pytest

from tether.evals.calibration import (
    auroc_for_errors,
    expected_calibration_error,
    prediction_rejection_ratio,
    reliability_bins,
    risk_coverage,
)


def test_ece_and_its_bins_by_hand():
    confidence, correct = [0.9, 0.9, 0.1, 0.1], [True, False, False, False]
    # bin 0.9: confidence 0.9, accuracy 0.5 -> 0.4 * 2/4; bin 0.1: 0.1 against 0 -> 0.1 * 2/4
    assert expected_calibration_error(confidence, correct, bins=10) == pytest.approx(0.25)
    bins = reliability_bins(confidence, correct, bins=10)
    assert [b.count for b in bins] == [0, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert bins[9].accuracy == 0.5 and bins[9].confidence == pytest.approx(0.9)
    assert reliability_bins([1.0], [True], bins=4)[-1].count == 1  # exactly 1 lands in the last bin
    assert expected_calibration_error([0.75, 0.75, 0.75, 0.75], [True, True, True, False]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability_bins([1.5], [True])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability_bins([float("nan")], [True])


def test_auroc_for_errors_by_hand():
    assert auroc_for_errors([0.9, 0.1, 0.8, 0.2], [False, True, False, True]) == 1.0
    assert auroc_for_errors([0.1, 0.9, 0.2, 0.8], [False, True, False, True]) == 0.0
    assert auroc_for_errors([0.5, 0.5], [False, True]) == 0.5  # a tie counts half
    assert auroc_for_errors([0.1, 0.2], [True, True]) is None


def test_prediction_rejection_ratio_is_one_for_the_oracle_and_minus_one_reversed():
    correct = [False, False, True, True]
    assert prediction_rejection_ratio([0.9, 0.8, 0.1, 0.2], correct) == pytest.approx(1.0)
    # rejecting right answers first: kept error rates 2/4, 2/3, 2/2, 1/1 (area 0.7917) against the oracle's
    # 2/4, 1/3, 0, 0 (area 0.2083) and random's 0.5: (0.5 - 0.7917) / (0.5 - 0.2083) = -1
    assert prediction_rejection_ratio([0.1, 0.2, 0.9, 0.8], correct) == pytest.approx(-1.0)
    assert prediction_rejection_ratio([0.3, 0.4], [True, True]) is None


def test_prediction_rejection_ratio_counts_rejected_answers_right_as_malinin_and_gales():
    # one wrong answer, ranked second: errors kept / n after 0..3 rejections are 1/4, 1/4, 0, 0; random is
    # 1/4 * (4 - k) / 4 and the oracle 1/4, 0, 0, 0: areas between random and curve 0.125/4 and 0.375/4.
    # (The error rate among the kept instead, 1/4, 1/3, 0, 0, would give 0.556.)
    assert prediction_rejection_ratio([0.8, 0.9, 0.1, 0.2], [False, True, True, True]) == pytest.approx(1 / 3)


def test_ties_are_taken_in_random_order():
    correct = [False, True, True, False]
    assert prediction_rejection_ratio([0.5] * 4, correct) == pytest.approx(0.0)  # a constant score: chance
    assert prediction_rejection_ratio([0.5] * 4, correct[::-1]) == pytest.approx(0.0)
    _, risk, aurc = risk_coverage([0.7, 0.7], [True, False])
    assert risk == pytest.approx([0.5, 0.5]) and aurc == pytest.approx(0.5)
    assert risk_coverage([0.7, 0.7], [False, True])[2] == pytest.approx(0.5)


def test_risk_coverage_by_hand():
    coverage, risk, aurc = risk_coverage([0.9, 0.8, 0.7], [True, False, True])
    assert coverage == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert risk == pytest.approx([0.0, 0.5, 1 / 3])
    assert aurc == pytest.approx((0.0 + 0.5 + 1 / 3) / 3)
    with pytest.raises(ValueError, match="one length"):
        risk_coverage([0.5], [True, False])


def test_every_choice_summary_reports_calibration_from_the_option_softmax():
    from tether.evals.choice_runner import summarize_choices

    records = [  # sure and right; a coin flip and wrong
        {"pred": 0, "pred_norm": 0, "correct": [0], "category": "a", "loglikelihoods": [0.0, -10.0]},
        {"pred": 0, "pred_norm": 0, "correct": [1], "category": "b", "loglikelihoods": [-3.0, -3.0]},
    ]
    summary = summarize_choices((), records)
    overall = summary["overall"]
    sure = 1 / (1 + 2.718281828459045**-10)
    assert overall["ece"] == pytest.approx(((1 - sure) + 0.5) / 2)
    assert overall["auroc_max_prob"] == 1.0 and overall["auroc_entropy"] == 1.0 and overall["prr_max_prob"] == 1.0
    assert [b["count"] for b in summary["reliability"]] == [0, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert summary["risk_coverage"]["risk"] == [0.0, 0.5]
