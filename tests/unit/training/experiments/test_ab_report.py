"""The A/B report: statistics checked by hand, sample ratio mismatch, and an end-to-end simulated experiment."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from journey.errors import InvalidInputError, NotFoundError
from journey.events import EVENT_SCHEMA
from journey.registry import Route, RouteAction, RouteRevision, RouteVariant
from journey.settings import Settings
from journey.stores.prediction_log import PREDICTION_SCHEMA, PredictionLog, PredictionRecord, label_predictions
from serving.routing import Router, Variant
from training.experiments.ab_report import (
    SRM_THRESHOLD,
    WeightPeriod,
    analyse,
    auc_difference_test,
    build_report,
    delong_auc,
    difference_interval,
    roc_auc,
    srm_check,
    two_proportion_test,
    uplift_interval,
    weights_from_history,
    wilson_interval,
    write_report,
)

T0 = datetime(2026, 11, 2, tzinfo=UTC)
DAY_S = 86_400.0
Z = 1.959963984540054


def labelled_table(rows: list[dict[str, object]]) -> pa.Table:
    """Predictions already labelled (PREDICTION_SCHEMA + converted), as label_predictions returns them."""
    schema = PREDICTION_SCHEMA.append(pa.field("converted", pa.bool_()))
    defaults = {"endpoint": "predict_purchase", "session_id": None, "shadow": False, "feature_age_s": None}
    return pa.Table.from_pylist([{**defaults, **row} for row in rows], schema=schema)


def users(variant: str, version: int, count: int, converted: int, first_id: int) -> list[dict[str, object]]:
    """`count` users with one prediction each, the first `converted` of them converted."""
    return [
        {
            "request_id": f"{variant}-{i}",
            "time": T0 + timedelta(seconds=i),
            "user_id": first_id + i,
            "experiment": "exp",
            "variant": variant,
            "model_version": version,
            "score": 0.9 if i < converted else 0.1,
            "converted": i < converted,
        }
        for i in range(count)
    ]


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


def test_analyse_reports_the_hand_computed_numbers_per_variant() -> None:
    table = labelled_table(users("control", 1, 1000, 100, 0) + users("treatment", 2, 1000, 130, 10_000))
    report = analyse(table, experiment="exp", weights={"control": 50, "treatment": 50}, window_s=DAY_S)
    control, treatment = report.variant("control"), report.variant("treatment")
    assert report.control == "control" and control.control and not treatment.control
    assert (control.users, control.predictions, control.conversions, control.rate) == (1000, 1000, 100, 0.1)
    assert (treatment.users, treatment.conversions, treatment.rate) == (1000, 130, 0.13)
    assert treatment.p_value == pytest.approx(0.035488, abs=1e-5) and treatment.significant
    assert treatment.difference == pytest.approx(0.03) and treatment.uplift == pytest.approx(0.3)
    assert control.auc == 1.0 and treatment.model_versions == [2]  # converted users scored 0.9, the rest 0.1
    assert treatment.auc_difference == 0.0 and control.auc_p_value is None
    assert treatment.auc_p_value is not None and math.isnan(treatment.auc_p_value)  # perfect in both: no variance
    assert report.srm is not None and report.srm.statistic == 0 and not report.srm.mismatch
    assert (control.observed_share, control.expected_share) == (0.5, 0.5)


def test_a_user_counts_once_in_the_variant_of_their_first_prediction() -> None:
    rows = users("control", 1, 2, 0, 0) + users("treatment", 2, 2, 0, 10)
    rows.append({**rows[0], "request_id": "later", "time": T0 + timedelta(days=1), "variant": "treatment"})
    rows.append({**rows[0], "request_id": "buys", "time": T0 + timedelta(days=2), "converted": True})
    report = analyse(labelled_table(rows), experiment="exp", window_s=DAY_S)
    assert (report.variant("control").users, report.variant("control").conversions) == (2, 1)
    assert (report.variant("treatment").users, report.variant("treatment").predictions) == (2, 3)


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


def test_srm_follows_weight_changes_at_each_users_first_exposure() -> None:
    """90/10 for the first 1000 users, 50/50 for the next 1000: 1400 / 600 is exactly what the route said."""
    rows = users("a", 1, 900, 0, 0) + users("b", 2, 100, 0, 5_000)
    later = users("a", 1, 500, 0, 10_000) + users("b", 2, 500, 0, 20_000)
    for row in later:
        row["time"] = T0 + timedelta(days=1, seconds=int(row["user_id"]) % 1000)  # type: ignore[call-overload]
        row["request_id"] = f"later-{row['request_id']}"
    periods = [WeightPeriod(T0, {"a": 90, "b": 10}), WeightPeriod(T0 + timedelta(days=1), {"a": 50, "b": 50})]
    ramped = analyse(labelled_table(rows + later), experiment="exp", weights=periods, window_s=DAY_S)
    assert ramped.srm is not None and ramped.srm.statistic == pytest.approx(0.0) and not ramped.srm.mismatch
    flat = analyse(labelled_table(rows + later), experiment="exp", weights={"a": 90, "b": 10}, window_s=DAY_S)
    assert flat.srm is not None and flat.srm.mismatch


def test_weight_periods_come_from_the_route_history_of_the_experiment() -> None:
    def revision(n: int, experiment: str | None, weights: dict[str, float]) -> RouteRevision:
        variants = tuple(
            RouteVariant(name, "purchase_propensity", i + 1, w) for i, (name, w) in enumerate(weights.items())
        )
        route = (
            None if experiment is None else Route("predict_purchase", "purchase_propensity", variants, experiment, "s")
        )
        return RouteRevision("predict_purchase", n, RouteAction.SET, route, n - 1, T0 + timedelta(hours=n), "bob")

    history = [revision(1, "x", {"a": 90, "b": 10}), revision(2, "x", {"a": 50, "b": 50}), revision(3, None, {})]
    assert weights_from_history(history, "x") == [
        WeightPeriod(T0 + timedelta(hours=1), {"a": 90, "b": 10}),
        WeightPeriod(T0 + timedelta(hours=2), {"a": 50, "b": 50}),
        WeightPeriod(T0 + timedelta(hours=3), {}),
    ]
    assert weights_from_history(history, "other") == []


# ------------------------------------------------------------------------------------------------------ the control


def test_the_control_defaults_to_production_and_can_be_named() -> None:
    table = labelled_table(users("production", 1, 10, 1, 0) + users("v2", 2, 10, 2, 100))
    assert analyse(table, experiment="exp", window_s=DAY_S).control == "production"
    assert analyse(table, experiment="exp", control="v2", window_s=DAY_S).control == "v2"
    with pytest.raises(InvalidInputError) as raised:
        analyse(table, experiment="exp", control="nobody", window_s=DAY_S)
    assert raised.value.field == "control"


def test_an_experiment_without_predictions_is_not_found() -> None:
    with pytest.raises(NotFoundError, match="'other'"):
        analyse(labelled_table(users("a", 1, 3, 0, 0)), experiment="other", window_s=DAY_S)


# ---------------------------------------------------------------------------------------------- simulated experiment


def simulate(
    *, n_users: int, better_b: bool, seed: int, drop_b: float = 0.0
) -> tuple[pa.Table, pa.Table, dict[str, float]]:
    """Users routed 50/50 by the real router. Each has a latent purchase propensity q; variant A's model scores q
    through heavy noise, B's (when `better_b`) through little, and B's answers lift the purchase probability by 30%
    (its better ranking shows better items). 1-3 predictions per user over a week; a buyer buys within 12 h of
    their first prediction. `drop_b` loses that share of B's log lines' users (a logging bug: SRM)."""
    rng = np.random.default_rng(seed)
    router = Router([Variant("a", 1, 50), Variant("b", 2, 50)], salt=f"sim-{seed}", experiment="sim")
    q = rng.beta(1.2, 12.0, size=n_users)
    logit = np.log(q / (1 - q))
    records: list[PredictionRecord] = []
    purchases: list[tuple[int, datetime]] = []
    for user in range(n_users):
        assignment = router.assign(user)
        b = assignment.variant == "b"
        if b and drop_b and rng.random() < drop_b:
            continue
        noise = 0.4 if (b and better_b) else 2.0
        first = T0 + timedelta(seconds=float(rng.uniform(0, 7 * DAY_S)))
        for k in range(int(rng.integers(1, 4))):
            score = 1 / (1 + math.exp(-(logit[user] + rng.normal(0, noise))))
            at = first + timedelta(hours=6 * k)
            record = PredictionRecord(
                f"{user}-{k}",
                at,
                "predict_purchase",
                user,
                assignment.variant,
                assignment.model_version,
                score,
                experiment="sim",
            )
            records.append(record)
        lift = 1.3 if (b and better_b) else 1.0
        if rng.random() < min(1.0, q[user] * lift):
            purchases.append((user, first + timedelta(hours=float(rng.uniform(0, 12)))))
    predictions = pa.table({n: [getattr(r, n) for r in records] for n in PREDICTION_SCHEMA.names}, PREDICTION_SCHEMA)
    events = pa.table(
        {
            "event_id": [f"p{i}" for i in range(len(purchases))],
            "user_id": [u for u, _ in purchases],
            "session_id": [f"s{u}" for u, _ in purchases],
            "item_id": [1] * len(purchases),
            "event_type": ["purchase"] * len(purchases),
            "event_timestamp": [at for _, at in purchases],
            "price": [10.0] * len(purchases),
            "category_id": [1] * len(purchases),
        },
        schema=EVENT_SCHEMA,
    )
    return predictions, events, {"a": 50.0, "b": 50.0}


def test_a_genuinely_better_variant_b_shows_higher_auc_and_conversion_with_a_significant_p_value() -> None:
    predictions, events, weights = simulate(n_users=30_000, better_b=True, seed=3)
    report = analyse(label_predictions(predictions, events, DAY_S), experiment="sim", weights=weights, window_s=DAY_S)
    a, b = report.variant("a"), report.variant("b")
    assert report.control == "a" and b.rate > a.rate and b.p_value is not None and b.p_value < 0.001
    assert b.auc is not None and a.auc is not None and b.auc > a.auc + 0.05
    assert b.auc_p_value is not None and b.auc_p_value < 0.001 and b.auc_significant
    assert b.uplift_ci is not None and b.uplift_ci[0] > 0
    assert report.srm is not None and not report.srm.mismatch


def test_a_versus_a_shows_no_significant_difference() -> None:
    predictions, events, weights = simulate(n_users=30_000, better_b=False, seed=4)
    report = analyse(label_predictions(predictions, events, DAY_S), experiment="sim", weights=weights, window_s=DAY_S)
    b = report.variant("b")
    assert b.p_value is not None and b.p_value > 0.05 and not b.significant
    assert b.difference_ci is not None and b.difference_ci[0] < 0 < b.difference_ci[1]
    assert b.auc_p_value is not None and b.auc_p_value > 0.05 and not b.auc_significant
    assert report.srm is not None and not report.srm.mismatch


def test_lost_log_lines_of_one_variant_show_as_a_sample_ratio_mismatch() -> None:
    predictions, events, weights = simulate(n_users=10_000, better_b=False, seed=5, drop_b=0.1)
    report = analyse(label_predictions(predictions, events, DAY_S), experiment="sim", weights=weights, window_s=DAY_S)
    assert report.srm is not None and report.srm.mismatch


# ------------------------------------------------------------------------------------------------------- the files


def test_build_report_reads_the_log_and_writes_markdown_png_and_json(settings: Settings, tmp_path: Path) -> None:
    predictions, events, weights = simulate(n_users=2_000, better_b=True, seed=6)
    shadow = (
        predictions.slice(0, 50)
        .set_column(
            PREDICTION_SCHEMA.get_field_index("shadow"), PREDICTION_SCHEMA.field("shadow"), pa.array([True] * 50)
        )
        .set_column(
            PREDICTION_SCHEMA.get_field_index("model_version"),
            PREDICTION_SCHEMA.field("model_version"),
            pa.array([3] * 50, pa.int64()),
        )
    )
    from journey.stores.prediction_log import ParquetSink

    with PredictionLog(ParquetSink(settings.prediction_log_dir)) as log:
        for row in pa.concat_tables([predictions, shadow]).to_pylist():
            log.append(PredictionRecord(**row))
    report, paths = build_report(settings, "sim", events, weights=weights)
    assert set(paths) == {"markdown", "plot", "json"}
    assert paths["markdown"].parent == settings.reports_dir / "ab" / "sim"
    text = paths["markdown"].read_text()
    assert "# A/B report: sim" in text and "| b |" in text and "Sample ratio" in text and "Shadow versions" in text
    assert "AUC vs control [95% CI]" in text and "DeLong" in text
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    document = json.loads(paths["json"].read_text())
    assert (
        document["control"] == "a" and len(document["variants"]) == 2 and document["shadows"][0]["model_version"] == 3
    )
    assert document["shadows"][0]["predictions"] == 50 and document["shadows"][0]["live_auc"] is not None
    b = document["variants"][1]
    assert b["auc_p_value"] == report.variant("b").auc_p_value and len(b["auc_difference_ci"]) == 2
    assert report.variant("a").users + report.variant("b").users == 2_000


def test_a_report_with_undefined_numbers_is_still_written(tmp_path: Path) -> None:
    table = labelled_table(users("a", 1, 5, 0, 0) + users("b", 2, 5, 0, 10))  # nobody converted: no AUC, no z
    report = analyse(table, experiment="exp", window_s=DAY_S)
    paths = write_report(report, tmp_path / "out", labelled=table)
    assert "n/a" in paths["markdown"].read_text() and json.loads(paths["json"].read_text())["variants"][1]["z"] is None
