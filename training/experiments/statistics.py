"""The statistics of an A/B test, each checked by hand in the tests: proportions, AUCs and the sample ratio.

    wilson_interval        a conversion rate's 95% interval (stays inside [0, 1], covers well at small n)
    difference_interval    p_treatment - p_control with an unpooled Wald interval
    uplift_interval        p_treatment / p_control - 1 with a Katz log interval
    two_proportion_test    pooled two-proportion z-test (two-sided)
    roc_auc, delong_auc    the AUC as a Mann-Whitney probability; with its DeLong variance (mid-ranks, O(n log n))
    auc_difference_test    DeLong's test for two independent samples (the arms score different users)
    srm_check              chi-square of users per variant against the route's weights (sample ratio mismatch)

scipy is imported inside the functions that need it: importing the A/B report (the CLI does at start) stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np

ALPHA: Final = 0.05
SRM_THRESHOLD: Final = 0.001
Z_95: Final = 1.959963984540054  # the 97.5% quantile of the standard normal

Interval = tuple[float, float]


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> Interval:
    """Wilson score interval of a proportion: unlike p ± z·se it stays inside [0, 1] and covers well at small n."""
    if trials <= 0:
        return (math.nan, math.nan)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def two_proportion_test(x_treatment: int, n_treatment: int, x_control: int, n_control: int) -> tuple[float, float]:
    """Pooled two-proportion z-test of p_treatment = p_control: (z, two-sided p-value); (nan, nan) when undefined."""
    if n_treatment <= 0 or n_control <= 0:
        return (math.nan, math.nan)
    pooled = (x_treatment + x_control) / (n_treatment + n_control)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_treatment + 1 / n_control))
    if se == 0:
        return (math.nan, math.nan)
    z = (x_treatment / n_treatment - x_control / n_control) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def difference_interval(
    x_treatment: int, n_treatment: int, x_control: int, n_control: int, z: float = Z_95
) -> tuple[float, Interval]:
    """p_treatment - p_control and its unpooled Wald interval."""
    if n_treatment <= 0 or n_control <= 0:
        return math.nan, (math.nan, math.nan)
    p_t, p_c = x_treatment / n_treatment, x_control / n_control
    se = math.sqrt(p_t * (1 - p_t) / n_treatment + p_c * (1 - p_c) / n_control)
    return p_t - p_c, (p_t - p_c - z * se, p_t - p_c + z * se)


def uplift_interval(
    x_treatment: int, n_treatment: int, x_control: int, n_control: int, z: float = Z_95
) -> tuple[float, Interval]:
    """Relative uplift p_treatment / p_control - 1 and its Katz log interval (undefined without conversions)."""
    if min(x_treatment, x_control, n_treatment, n_control) <= 0:
        return math.nan, (math.nan, math.nan)
    ratio = (x_treatment / n_treatment) / (x_control / n_control)
    se = math.sqrt(1 / x_treatment - 1 / n_treatment + 1 / x_control - 1 / n_control)
    log_ratio = math.log(ratio)
    return ratio - 1, (math.exp(log_ratio - z * se) - 1, math.exp(log_ratio + z * se) - 1)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve as the Mann-Whitney probability P(score of a positive > score of a negative), ties
    counted half; None when one class is absent."""
    from scipy.stats import rankdata

    labels = np.asarray(labels, dtype=bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def delong_auc(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float] | None:
    """The AUC and its DeLong variance, (auc, variance); None when one class is absent.

    DeLong's structural components: each positive's share of negatives ranked below it (V10, ties half) and each
    negative's share of positives ranked above it (V01); the AUC is the mean of either and its variance
    var(V10)/m + var(V01)/n (m positives, n negatives, sample variances). Mid-ranks give every component at once
    (O(n log n) instead of the m x n pair table): a positive's rank among all scores minus its rank among the
    positives counts the negatives below it. The variance is NaN with a single positive or negative (no spread to
    estimate).
    """
    from scipy.stats import rankdata

    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = scores[labels], scores[~labels]
    m, n = len(positives), len(negatives)
    if m == 0 or n == 0:
        return None
    overall = rankdata(np.concatenate([positives, negatives]))
    v10 = (overall[:m] - rankdata(positives)) / n
    v01 = 1.0 - (overall[m:] - rankdata(negatives)) / m
    auc = float(v10.mean())
    if m < 2 or n < 2:
        return auc, math.nan
    return auc, float(v10.var(ddof=1) / m + v01.var(ddof=1) / n)


@dataclass(frozen=True)
class AucDifference:
    """AUC(treatment) - AUC(control) from independent samples, its 95% interval, DeLong z and two-sided p."""

    difference: float
    ci: Interval
    z: float
    p_value: float


def auc_difference_test(
    treatment_scores: np.ndarray,
    treatment_labels: np.ndarray,
    control_scores: np.ndarray,
    control_labels: np.ndarray,
    z: float = Z_95,
) -> AucDifference | None:
    """DeLong's test of AUC(treatment) = AUC(control) for two independent samples (different users per arm):
    var(difference) = var(AUC treatment) + var(AUC control). None when an arm lacks a class; NaN interval and
    p-value when the variance cannot be estimated (fewer than two of a class) or is zero (both arms separate
    perfectly)."""
    from scipy.stats import norm

    treatment = delong_auc(treatment_scores, treatment_labels)
    control = delong_auc(control_scores, control_labels)
    if treatment is None or control is None:
        return None
    difference = treatment[0] - control[0]
    se = math.sqrt(treatment[1] + control[1]) if not math.isnan(treatment[1] + control[1]) else math.nan
    if math.isnan(se) or se == 0:
        return AucDifference(difference, (math.nan, math.nan), math.nan, math.nan)
    statistic = difference / se
    return AucDifference(
        difference, (difference - z * se, difference + z * se), statistic, float(2 * norm.sf(abs(statistic)))
    )


@dataclass(frozen=True)
class SrmCheck:
    """Chi-square goodness of fit of users per variant against the configured weights."""

    observed: dict[str, int]
    expected: dict[str, float]
    statistic: float
    df: int
    p_value: float
    mismatch: bool


def srm_check(
    observed: Mapping[str, int], expected: Mapping[str, float], threshold: float = SRM_THRESHOLD
) -> SrmCheck | None:
    """Compare observed user counts with expected ones (any scale: rescaled to the observed total). A variant
    with users but no expected share is a mismatch outright. None when fewer than two variants are expected."""
    from scipy.stats import chi2

    names = list(dict.fromkeys([*expected, *observed]))
    total = sum(observed.values())
    scale = sum(expected.values())
    if total == 0 or scale <= 0:
        return None
    expected_n = {name: total * expected.get(name, 0.0) / scale for name in names}
    counts = {name: int(observed.get(name, 0)) for name in names}
    tested = [name for name in names if expected_n[name] > 0]
    if len(tested) < 2:
        return None
    if any(counts[name] > 0 and expected_n[name] == 0 for name in names):
        return SrmCheck(counts, expected_n, math.inf, len(tested) - 1, 0.0, True)
    statistic = sum((counts[n] - expected_n[n]) ** 2 / expected_n[n] for n in tested)
    df = len(tested) - 1
    p_value = float(chi2.sf(statistic, df))
    return SrmCheck(counts, expected_n, statistic, df, p_value, p_value < threshold)
