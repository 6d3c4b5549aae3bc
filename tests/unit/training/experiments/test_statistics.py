"""The A/B statistics checked by hand: proportions, AUC and DeLong's test (against the pairwise definition and its
false-positive rate under A/A), and the sample ratio check."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.experiments.statistics import (
    SRM_THRESHOLD,
    auc_difference_test,
    delong_auc,
    difference_interval,
    roc_auc,
    srm_check,
    two_proportion_test,
    uplift_interval,
    wilson_interval,
)

Z = 1.959963984540054


# ---------------------------------------------------------------------------------------------- hand-computed numbers


def test_wilson_interval_matches_the_hand_computation() -> None:
    # 100 of 1000: p = 0.1, z^2 = 3.841459, z^2/n = 0.003841459, denominator 1.003841459
    # centre = (0.1 + 0.001920729) / 1.003841459 = 0.101531...
    # half = 1.959964 * sqrt(0.1 * 0.9 / 1000 + 3.841459 / 4e6) / 1.003841459
    #      = 1.959964 * sqrt(0.00009 + 0.00000096036) / 1.003841459 = 1.959964 * 0.0095373 / 1.003841459 = 0.018621
    low, high = wilson_interval(100, 1000)
    assert low == pytest.approx(0.101531 - 0.018621, abs=2e-6) and high == pytest.approx(0.101531 + 0.018621, abs=2e-6)
    assert wilson_interval(0, 10)[0] == 0.0 and math.isnan(wilson_interval(0, 0)[0])


def test_two_proportion_z_test_matches_the_hand_computation() -> None:
    # control 100/1000 = 0.10, treatment 130/1000 = 0.13; pooled p = 230/2000 = 0.115
    # se = sqrt(0.115 * 0.885 * (1/1000 + 1/1000)) = sqrt(0.00020355) = 0.0142671
    # z = 0.03 / 0.0142671 = 2.10274; p = erfc(2.10274 / sqrt 2) = 0.035488
    z, p_value = two_proportion_test(130, 1000, 100, 1000)
    assert z == pytest.approx(2.10274, abs=1e-5) and p_value == pytest.approx(0.035488, abs=1e-5)


def test_difference_interval_matches_the_hand_computation() -> None:
    # se = sqrt(0.13 * 0.87 / 1000 + 0.1 * 0.9 / 1000) = sqrt(0.0002031) = 0.0142513
    # 0.03 ± 1.959964 * 0.0142513 = 0.03 ± 0.0279320 -> [0.002068, 0.057932]
    difference, (low, high) = difference_interval(130, 1000, 100, 1000)
    assert difference == pytest.approx(0.03)
    assert low == pytest.approx(0.002068, abs=1e-6) and high == pytest.approx(0.057932, abs=1e-6)


def test_relative_uplift_interval_matches_the_hand_computation() -> None:
    # ratio 1.3, ln 1.3 = 0.2623643; se = sqrt(1/130 - 1/1000 + 1/100 - 1/1000) = sqrt(0.0156923) = 0.1252690
    # 1.959964 * 0.1252690 = 0.2455227 -> exp(0.0168416) - 1 = 0.016984, exp(0.5078870) - 1 = 0.661776
    uplift, (low, high) = uplift_interval(130, 1000, 100, 1000)
    assert uplift == pytest.approx(0.3)
    assert low == pytest.approx(0.016984, abs=1e-5) and high == pytest.approx(0.661776, abs=1e-5)


def test_auc_is_the_share_of_positive_negative_pairs_ranked_right_with_ties_half() -> None:
    # positives 0.9 and 0.4, negatives 0.8 and 0.3: pairs (0.9>0.8, 0.9>0.3, 0.4<0.8, 0.4>0.3) -> 3/4
    assert roc_auc(np.array([0.9, 0.8, 0.4, 0.3]), np.array([1, 0, 1, 0])) == 0.75
    assert roc_auc(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5
    assert roc_auc(np.array([0.5, 0.7]), np.array([0, 0])) is None


# DeLong by hand. Arm T: positives 0.9, 0.6, 0.4; negatives 0.7, 0.3, 0.2.
#   V10 (share of negatives below each positive): 1, 2/3, 2/3 -> AUC 7/9; var(V10) = (4 + 1 + 1)/81 / 2 = 1/27
#   V01 (share of positives above each negative): 1/3, 1, 1 -> mean 7/9; var(V01) = (16 + 4 + 4)/81 / 2 = 4/27
#   var(AUC) = (1/27) / 3 + (4/27) / 3 = 5/81
# Arm C (with ties, counted half): positives 0.5, 0.5, 0.2; negatives 0.5, 0.1, 0.3.
#   V10: 2.5/3, 2.5/3, 1/3 -> AUC 2/3; var(V10) = (1/36 + 1/36 + 4/36) / 2 = 1/12
#   V01: 1/3, 1, 2/3; var(V01) = (1/9 + 1/9 + 0) / 2 = 1/9
#   var(AUC) = (1/12) / 3 + (1/9) / 3 = 7/108
# T - C = 1/9, se = sqrt(5/81 + 7/108) = sqrt(41/324) = sqrt(41) / 18 = 0.3557291, z = 0.3123475
ARM_T = (np.array([0.9, 0.6, 0.4, 0.7, 0.3, 0.2]), np.array([1, 1, 1, 0, 0, 0]))
ARM_C = (np.array([0.5, 0.5, 0.2, 0.5, 0.1, 0.3]), np.array([1, 1, 1, 0, 0, 0]))


def test_delong_auc_and_variance_match_the_hand_computation_with_ties_counted_half() -> None:
    assert delong_auc(*ARM_T) == pytest.approx((7 / 9, 5 / 81))
    assert delong_auc(*ARM_C) == pytest.approx((2 / 3, 7 / 108))
    assert delong_auc(np.array([0.2, 0.4]), np.array([0, 0])) is None
    single = delong_auc(np.array([0.9, 0.1, 0.2]), np.array([1, 0, 0]))
    assert single is not None and single[0] == 1.0 and math.isnan(single[1])  # one positive: no variance


def test_auc_difference_of_independent_arms_matches_the_hand_computation() -> None:
    se = math.sqrt(41) / 18
    result = auc_difference_test(*ARM_T, *ARM_C)
    assert result is not None
    assert result.difference == pytest.approx(1 / 9) and result.z == pytest.approx(1 / 9 / se)
    assert result.ci == pytest.approx((1 / 9 - Z * se, 1 / 9 + Z * se))
    assert result.p_value == pytest.approx(math.erfc(1 / 9 / se / math.sqrt(2)))  # 0.7548


def brute_force_delong(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """DeLong's AUC and variance from the m x n table of pair comparisons (the definition, quadratic)."""
    positives, negatives = scores[labels == 1], scores[labels == 0]
    psi = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return float(psi.mean()), float(v10.var(ddof=1) / len(positives) + v01.var(ddof=1) / len(negatives))


def test_delong_by_mid_ranks_equals_the_pairwise_definition_on_tied_scores() -> None:
    rng = np.random.default_rng(12)
    labels = (rng.random(300) < 0.2).astype(int)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounding makes many ties across and within classes
    assert delong_auc(scores, labels) == pytest.approx(brute_force_delong(scores, labels), rel=1e-12)


def test_auc_difference_between_identical_distributions_is_not_significant() -> None:
    rng = np.random.default_rng(21)

    def arm(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = (rng.random(n) < 0.1).astype(int)
        return rng.normal(labels * 1.0, 1.0), labels

    large = auc_difference_test(*arm(40_000), *arm(40_000))
    assert large is not None and large.p_value > 0.05 and large.ci[0] < 0 < large.ci[1]
    # and the test holds its size: about 5% of same-distribution comparisons come out significant
    p_values = [result.p_value for _ in range(400) if (result := auc_difference_test(*arm(400), *arm(400)))]
    assert 0.02 <= np.mean(np.array(p_values) < 0.05) <= 0.09


def test_auc_difference_between_a_sharp_and_a_noisy_model_is_significant() -> None:
    rng = np.random.default_rng(22)
    labels = (rng.random(4_000) < 0.1).astype(int)
    sharp, noisy = rng.normal(labels * 1.5, 1.0), rng.normal(labels * 0.5, 1.0)
    result = auc_difference_test(sharp[:2_000], labels[:2_000], noisy[2_000:], labels[2_000:])
    assert result is not None and result.difference > 0.15 and result.p_value < 1e-6 and result.ci[0] > 0


# --------------------------------------------------------------------------------------------- sample ratio mismatch


def test_srm_is_detected_on_a_deliberately_skewed_assignment() -> None:
    # 1000 vs 1200 at 50/50: expected 1100 each, chi2 = 2 * 100^2 / 1100 = 18.18, p = 2.0e-5 < 0.001
    check = srm_check({"a": 1000, "b": 1200}, {"a": 50, "b": 50})
    assert check is not None and check.statistic == pytest.approx(18.1818, abs=1e-4)
    assert check.p_value == pytest.approx(2.0085e-5, rel=1e-3) and check.mismatch


def test_srm_is_not_flagged_on_a_fair_assignment() -> None:
    rng = np.random.default_rng(7)
    counts = np.bincount(rng.choice(3, size=30_000, p=[0.5, 0.3, 0.2]), minlength=3)
    check = srm_check(dict(zip("abc", counts.tolist(), strict=True)), {"a": 5, "b": 3, "c": 2})
    assert check is not None and check.p_value > SRM_THRESHOLD and not check.mismatch


def test_users_in_a_variant_the_route_never_weighted_are_a_mismatch() -> None:
    check = srm_check({"a": 100, "b": 100, "ghost": 1}, {"a": 1, "b": 1})
    assert check is not None and check.mismatch and check.p_value == 0.0
