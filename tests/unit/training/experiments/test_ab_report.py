"""The A/B report: per-variant numbers, sample ratio mismatch, a simulated experiment end to end, and the files.

The statistics themselves are checked by hand in test_statistics.py.
"""

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
from training.experiments.ab_analysis import WeightPeriod, analyse, weights_from_history
from training.experiments.ab_report import build_report, write_report

T0 = datetime(2026, 11, 2, tzinfo=UTC)
DAY_S = 86_400.0


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


# ----------------------------------------------------------------------------------------------------- per variant


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
