"""Training sets: labels from hand-made events, the re-join around Feast's point-in-time join, and no leakage.

The Feast part runs the real pipeline on a small synthetic dataset (local profile, temporary data dir): batch
features, session history, `feast apply`, `build_training_set`. The no-leakage tests recompute, in plain pandas
from the raw events, every feature a sampled row carries, and check both that it equals the training-set value
and that a leaky computation (one that includes the label event) would differ for some rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from journey.contracts import LAST_N_EVENTS, NEXT_ACTION_V1, NEXT_ITEM_V1, PURCHASE_PROPENSITY_V1
from journey.datasets.store import DatasetStore
from journey.datasets.synthetic import SyntheticConfig, generate
from journey.errors import InvalidInputError
from journey.events import EVENT_SCHEMA
from journey.settings import Profile, Settings
from training.datasets import (
    ENTITY_BUILDERS,
    EXIT,
    build_training_set,
    next_action_entities,
    next_item_entities,
    propensity_entities,
    service_features,
    training_set,
    write_session_history,
)

T0 = datetime(2026, 9, 3, 10, 0, tzinfo=UTC)
DATASET = "tiny"
SAMPLE = 200


def _events(rows: list[tuple[str, int, str, int, str, float, float | None]]) -> pa.Table:
    """(event_id, user, session, item, type, minutes after T0, price) -> canonical events."""
    return pa.table(
        {
            "event_id": [r[0] for r in rows],
            "user_id": [r[1] for r in rows],
            "session_id": [r[2] for r in rows],
            "item_id": [r[3] for r in rows],
            "event_type": [r[4] for r in rows],
            "event_timestamp": [T0 + timedelta(minutes=r[5]) for r in rows],
            "price": [r[6] for r in rows],
            "category_id": [1] * len(rows),
        },
        schema=EVENT_SCHEMA,
    )


# user 1: session A buys item 10 after viewing it; session B, 5 hours later, buys item 11 seen in A.
# user 2: a purchase at the very instant of the view (not "after" it).
HAND_MADE = _events(
    [
        ("a1", 1, "A", 10, "view", 0, 5.0),
        ("a2", 1, "A", 11, "view", 1, None),  # unpriced view: the item's last known price (7.0, from b0)
        ("a3", 1, "A", 10, "add_to_cart", 2, 5.0),
        ("a4", 1, "A", 10, "purchase", 3, 5.0),
        ("a5", 1, "A", 12, "view", 4, 9.0),
        ("b0", 3, "X", 11, "view", -60, 7.0),
        ("b1", 1, "B", 11, "view", 300, 7.0),
        ("b2", 1, "B", 11, "purchase", 301, 7.0),
        ("c1", 2, "C", 20, "view", 10, 3.0),
        ("c2", 2, "C", 20, "purchase", 10, 3.0),
    ]
)
LATER = T0 + timedelta(days=3)  # a data end far enough for every horizon to be observed


def _labels(frame: pd.DataFrame) -> dict[str, Any]:
    return dict(zip(frame["event_id"], frame["label"], strict=True))


# --------------------------------------------------------------------------------------------------------------
# Labels and sampling (no Feast)
# --------------------------------------------------------------------------------------------------------------


def test_propensity_session_horizon_counts_only_later_purchases_in_the_same_session() -> None:
    frame = propensity_entities(HAND_MADE, horizon="session", data_end=LATER, max_per_session=None)
    assert _labels(frame) == {"b0": 0, "a1": 1, "a2": 0, "a5": 0, "c1": 0, "b1": 1}
    bought = frame.set_index("event_id")
    assert bought.loc["a1", "label_timestamp"] == T0 + timedelta(minutes=3)
    assert bought.loc["a2", "label_timestamp"] is pd.NaT
    assert bought.loc["a2", "candidate_price"] == 7.0  # last price of item 11 before the view
    assert bought.loc["a1", "request_ts"] == int(T0.timestamp())
    assert list(frame["row_id"]) == list(range(len(frame)))
    assert frame["event_timestamp"].is_monotonic_increasing


def test_propensity_timedelta_horizon_crosses_sessions_within_the_horizon_only() -> None:
    day = propensity_entities(HAND_MADE, horizon=timedelta(hours=24), data_end=LATER, max_per_session=None)
    assert _labels(day)["a2"] == 1  # item 11 bought in session B, 5 h later
    assert day.set_index("event_id").loc["a2", "label_timestamp"] == T0 + timedelta(minutes=301)
    hour = propensity_entities(HAND_MADE, horizon=timedelta(hours=1), data_end=LATER, max_per_session=None)
    assert _labels(hour)["a2"] == 0
    assert _labels(hour)["c1"] == 0  # same instant is not "after"


def test_propensity_drops_examples_whose_horizon_is_not_observed() -> None:
    end = T0 + timedelta(minutes=310)  # session B may still go on; A and C ended more than 30 min before
    by_session = propensity_entities(HAND_MADE, data_end=end, max_per_session=None)
    assert set(by_session["event_id"]) == {"b0", "a1", "a2", "a5", "c1"}
    by_day = propensity_entities(HAND_MADE, horizon=timedelta(hours=24), data_end=end + timedelta(hours=23))
    assert set(by_day["event_id"]) == {"b0", "a1", "a2", "a5", "c1"}  # b1 + 24 h is past the end


def test_next_action_labels_are_the_next_event_type_and_exit_at_the_session_end() -> None:
    frame = next_action_entities(HAND_MADE, data_end=LATER, max_per_session=None)
    labels = _labels(frame)
    assert [labels[e] for e in ("a1", "a2", "a3", "a4", "a5")] == ["view", "add_to_cart", "purchase", "view", EXIT]
    assert [labels[e] for e in ("b1", "b2")] == ["purchase", EXIT]
    assert "c1" not in labels  # its next event has the same timestamp: the state at t would already show it
    assert labels["c2"] == EXIT
    by_id = frame.set_index("event_id")
    assert by_id.loc["a1", "label_timestamp"] == T0 + timedelta(minutes=1)
    assert by_id.loc["a5", "label_timestamp"] is pd.NaT


def test_next_action_drops_only_the_exit_of_sessions_that_may_continue() -> None:
    frame = next_action_entities(HAND_MADE, data_end=T0 + timedelta(minutes=310), max_per_session=None)
    labels = _labels(frame)
    assert labels["b1"] == "purchase"
    assert "b2" not in labels
    assert labels["a5"] == EXIT


def test_sampling_caps_sessions_and_total_reproducibly() -> None:
    events = generate(SyntheticConfig(n_users=200, days=5, seed=3)).events
    capped = next_action_entities(events, max_per_session=2, max_examples=None, seed=1)
    assert capped.groupby("session_id").size().max() == 2
    total = next_action_entities(events, max_per_session=2, max_examples=100, seed=1)
    assert len(total) == 100
    pd.testing.assert_frame_equal(total, next_action_entities(events, max_per_session=2, max_examples=100, seed=1))
    assert not total.equals(next_action_entities(events, max_per_session=2, max_examples=100, seed=2))
    assert list(total["row_id"]) == list(range(100))


def test_next_item_labels_are_the_item_of_the_sessions_next_event() -> None:
    frame = next_item_entities(HAND_MADE, max_per_session=None)
    assert _labels(frame) == {"a1": 11, "a2": 10, "a3": 10, "a4": 12, "b1": 11}
    assert frame["label"].dtype == np.int64
    by_id = frame.set_index("event_id")
    assert by_id.loc["a1", "label_timestamp"] == T0 + timedelta(minutes=1)
    assert (frame["label_timestamp"] > frame["event_timestamp"]).all()  # strictly after the decision time
    assert list(frame["row_id"]) == list(range(len(frame)))
    assert frame["event_timestamp"].is_monotonic_increasing
    assert list(frame.columns) == [
        *("row_id", "event_id", "event_timestamp", "user_id", "session_id", "label", "label_timestamp"),
    ]


def test_next_item_drops_examples_whose_next_event_has_the_same_timestamp() -> None:
    labels = _labels(next_item_entities(HAND_MADE, max_per_session=None))
    assert "c1" not in labels  # c2 (same instant) would already be in the session state at t


def test_a_sessions_last_event_makes_no_next_item_example_however_the_data_ends() -> None:
    frame = next_item_entities(HAND_MADE, max_per_session=None)
    assert not {"a5", "b0", "b2", "c2"} & set(frame["event_id"])  # last events of A, X (its only one), B and C
    # nothing is censored: an example exists only where its label event was seen
    early_end = next_item_entities(HAND_MADE, max_per_session=None, data_end=T0 + timedelta(minutes=310))
    pd.testing.assert_frame_equal(early_end, frame)


def test_next_item_sampling_caps_sessions_and_total_reproducibly() -> None:
    events = generate(SyntheticConfig(n_users=200, days=5, seed=3)).events
    everything = next_item_entities(events, max_per_session=None, max_examples=None)
    capped = next_item_entities(events, max_per_session=2, max_examples=None, seed=1)
    assert capped.groupby("session_id").size().max() == 2
    assert everything.groupby("session_id").size().max() > 2
    assert set(capped["event_id"]) <= set(everything["event_id"])
    total = next_item_entities(events, max_per_session=2, max_examples=100, seed=1)
    assert len(total) == 100
    pd.testing.assert_frame_equal(total, next_item_entities(events, max_per_session=2, max_examples=100, seed=1))
    assert not total.equals(next_item_entities(events, max_per_session=2, max_examples=100, seed=2))
    assert list(total["row_id"]) == list(range(100))


def test_next_item_v1_has_an_entity_builder() -> None:
    assert ENTITY_BUILDERS[NEXT_ITEM_V1] is next_item_entities


def test_bad_horizon_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="horizon"):
        propensity_entities(HAND_MADE, horizon="day")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------------
# Through Feast
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Any, pd.DataFrame]:
    """A small synthetic dataset with batch features, session history and a registry (local profile)."""
    from journey.stores.feature_store import apply, open_store
    from training.features import build_features

    root: Path = tmp_path_factory.mktemp("journey")
    settings = Settings(profile=Profile.LOCAL, data_dir=root / "data", reports_dir=root / "reports")
    data = generate(SyntheticConfig(n_users=300, days=10, seed=7))
    DatasetStore(settings.events_dir).write(DATASET, data.events, source={"kind": "synthetic"})
    build_features(DATASET, settings)
    write_session_history(DATASET, settings)
    apply(settings)  # the feature repo's sources read these settings (use_settings), not the environment
    events = data.events.to_pandas()
    events["event_timestamp"] = pd.to_datetime(events["event_timestamp"], utc=True)
    return settings, open_store(settings), events


@pytest.fixture(scope="module")
def propensity(env: tuple[Settings, Any, pd.DataFrame]) -> tuple[pd.DataFrame, dict[str, Any]]:
    settings, store, _ = env
    return build_training_set(DATASET, PURCHASE_PROPENSITY_V1, settings, store=store)


@pytest.fixture(scope="module")
def next_action(env: tuple[Settings, Any, pd.DataFrame]) -> tuple[pd.DataFrame, dict[str, Any]]:
    settings, store, _ = env
    return build_training_set(DATASET, NEXT_ACTION_V1, settings, store=store)


@pytest.fixture(scope="module")
def next_item(env: tuple[Settings, Any, pd.DataFrame]) -> tuple[pd.DataFrame, dict[str, Any]]:
    settings, store, _ = env
    return build_training_set(DATASET, NEXT_ITEM_V1, settings, store=store)


ENTITY_COLUMNS = {
    PURCHASE_PROPENSITY_V1: [
        *("row_id", "event_id", "event_timestamp", "user_id", "item_id", "session_id"),
        *("candidate_price", "request_ts", "candidate_item_id", "label", "label_timestamp"),
    ],
    NEXT_ACTION_V1: ["row_id", "event_id", "event_timestamp", "user_id", "session_id", "label", "label_timestamp"],
}


@pytest.mark.parametrize("service", [PURCHASE_PROPENSITY_V1, NEXT_ACTION_V1])
def test_frame_has_the_entity_columns_then_the_service_features_in_order(
    env: tuple[Settings, Any, pd.DataFrame], service: str, request: pytest.FixtureRequest
) -> None:
    _, store, _ = env
    frame, meta = request.getfixturevalue("propensity" if service == PURCHASE_PROPENSITY_V1 else "next_action")
    projections = store.get_feature_service(service).feature_view_projections
    expected = [f.name for p in projections for f in p.features]
    assert service_features(store, service) == expected
    # next_action_v1 lists session_activity.user_id, which is the entity column user_id itself
    entities = ENTITY_COLUMNS[service]
    assert list(frame.columns) == entities + [f for f in expected if f not in entities]
    assert meta["rows"] == len(frame) > 1_000
    assert sum(meta["labels"].values()) == len(frame)
    assert meta["rows_missing_view"]["session_activity"] == 0  # every example has its session state


def test_training_set_keeps_every_entity_row_in_input_order(
    env: tuple[Settings, Any, pd.DataFrame], propensity: tuple[pd.DataFrame, dict[str, Any]]
) -> None:
    _, store, _ = env
    frame, meta = propensity
    keys = ["row_id", "user_id", "item_id", "session_id", "event_timestamp"]
    entities = frame[[*keys, "candidate_price", "request_ts", "candidate_item_id"]]
    shuffled = entities.sample(frac=1.0, random_state=5).reset_index(drop=True)
    out = training_set(store, PURCHASE_PROPENSITY_V1, shuffled)
    assert list(out["row_id"]) == list(shuffled["row_id"])
    # a user's first day has no user_activity snapshot yet: those rows are kept, with the user features missing
    assert meta["rows_missing_view"]["user_activity"] > 0
    assert out["views_7d"].isna().sum() == meta["rows_missing_view"]["user_activity"]
    assert out["session_events"].notna().all()
    assert out["request_hour"].notna().all()

    # Feast alone (one query with the service) drops such rows and reorders the rest; what it keeps agrees with us
    subset = shuffled.head(1_000)
    feast_out = store.get_historical_features(
        entity_df=subset, features=store.get_feature_service(PURCHASE_PROPENSITY_V1)
    ).to_df()
    assert len(feast_out) < len(subset)
    mine = out.set_index("row_id").loc[feast_out["row_id"]]
    for name in service_features(store, PURCHASE_PROPENSITY_V1):
        np.testing.assert_allclose(
            mine[name].to_numpy(float), feast_out[name].to_numpy(float), rtol=1e-12, err_msg=name
        )


def test_unknown_service_is_named(env: tuple[Settings, Any, pd.DataFrame]) -> None:
    settings, store, _ = env
    with pytest.raises(InvalidInputError, match="no_such_model_v9") as raised:
        training_set(store, "no_such_model_v9", pd.DataFrame({"row_id": [0]}))
    assert "purchase_propensity_v1" in str(raised.value)  # the known ones are listed
    with pytest.raises(InvalidInputError, match="no_such_model_v9"):
        build_training_set(DATASET, "no_such_model_v9", settings, store=store)


@pytest.mark.parametrize(
    ("service", "column"),
    [(PURCHASE_PROPENSITY_V1, "candidate_price"), (PURCHASE_PROPENSITY_V1, "item_id"), (NEXT_ACTION_V1, "session_id")],
)
def test_missing_entity_column_is_named(env: tuple[Settings, Any, pd.DataFrame], service: str, column: str) -> None:
    settings, store, _ = env
    entities = propensity_entities(DatasetStore(settings.events_dir).events(DATASET), max_examples=5)
    entities = entities.drop(columns=[column])
    with pytest.raises(InvalidInputError, match=column) as raised:
        training_set(store, service, entities)
    assert raised.value.field == column


# --------------------------------------------------------------------------------------------------------------
# No leakage: recompute every feature from the raw events
# --------------------------------------------------------------------------------------------------------------


FEATURE_TTL = pd.Timedelta(days=2)  # of user_activity and item_popularity (feature_repo/feature_views.py)
USER_WINDOW, ITEM_WINDOW = pd.Timedelta(days=30), pd.Timedelta(days=7)  # a snapshot row needs an event in its window


def _joined_snapshot(times: pd.Series, snapshot: pd.Timestamp, t: pd.Timestamp, window: pd.Timedelta) -> pd.Timestamp:
    """The snapshot Feast joins at t: the newest midnight S <= t within the TTL that has a row, i.e. whose entity had
    an event in [S - window, S) (a quiet day's row is missing and the day before's is joined); `snapshot` when none
    has one (the features are missing then)."""
    day = snapshot
    while day >= t - FEATURE_TTL:
        if ((times < day) & (times >= day - window)).any():
            return day
        day -= pd.Timedelta(days=1)
    return snapshot


def _user_features(events: pd.DataFrame, user: int, before: pd.Timestamp) -> dict[str, float]:
    """user_activity as of `before` from the user's events strictly before it (NaN: no snapshot exists)."""
    mine = events[(events["user_id"] == user) & (events["event_timestamp"] < before)]
    recent = mine[mine["event_timestamp"] >= before - pd.Timedelta(days=30)]
    if recent.empty:
        return dict.fromkeys(("views_7d", "purchases_30d", "carts_1d", "seconds_since_last_event"), np.nan)

    def count(kind: str, days: int) -> float:
        return float(
            ((mine["event_type"] == kind) & (mine["event_timestamp"] >= before - pd.Timedelta(days=days))).sum()
        )

    viewed = recent.loc[recent["event_type"] == "view", "price"].dropna()
    return {
        "views_7d": count("view", 7),
        "purchases_30d": count("purchase", 30),
        "carts_1d": count("add_to_cart", 1),
        "seconds_since_last_event": (before - mine["event_timestamp"].max()).total_seconds(),
        "avg_viewed_price_30d": viewed.mean() if len(viewed) else np.nan,
    }


def _item_features(events: pd.DataFrame, item: int, before: pd.Timestamp) -> dict[str, float]:
    mine = events[(events["item_id"] == item) & (events["event_timestamp"] < before)]
    week = mine[mine["event_timestamp"] >= before - pd.Timedelta(days=7)]
    if week.empty:
        return {"item_views_7d": np.nan, "item_price": np.nan}
    priced = mine["price"].dropna()
    last_price = priced.iloc[-1] if len(priced) else np.nan
    return {"item_views_7d": float((week["event_type"] == "view").sum()), "item_price": last_price}


def _session_features(events: pd.DataFrame, session: str, upto: pd.Timestamp) -> dict[str, Any]:
    """session_activity as of `upto`: the session's events with timestamp <= upto."""
    mine = events[(events["session_id"] == session) & (events["event_timestamp"] <= upto)]
    return {
        "session_events": float(len(mine)),
        "session_views": float((mine["event_type"] == "view").sum()),
        "session_purchases": float((mine["event_type"] == "purchase").sum()),
        "session_seconds_since_start": (mine["event_timestamp"].max() - mine["event_timestamp"].min()).total_seconds(),
        "session_last_item_ids": list(mine["item_id"].tail(LAST_N_EVENTS)),
        "session_last_event_ts": list(
            (mine["event_timestamp"].tail(LAST_N_EVENTS) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        ),
        "session_last_category_ids": list(mine["category_id"].fillna(-1).astype(np.int64).tail(LAST_N_EVENTS)),
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | np.ndarray) or isinstance(b, list | np.ndarray):
        return list(a) == list(b)
    if pd.isna(a) or pd.isna(b):
        return bool(pd.isna(a) and pd.isna(b))
    return bool(np.isclose(float(a), float(b), rtol=1e-9, atol=1e-9))


def _sample(frame: pd.DataFrame) -> pd.DataFrame:
    """SAMPLE rows, up to half of them with a label event (so the leaky recomputation has material)."""
    labelled = frame[frame["label_timestamp"].notna()]
    first = labelled.sample(min(len(labelled), SAMPLE // 2), random_state=1)
    return pd.concat([first, frame.drop(first.index).sample(SAMPLE - len(first), random_state=1)])


def _check_no_leakage(frame: pd.DataFrame, recompute: Any, per_row: int = 5) -> dict[str, int]:
    """Every sampled value equals the recomputation from events before the decision time; returns, per feature,
    how many rows a leaky recomputation (including events up to the label event) would have changed."""
    changed: dict[str, int] = {}
    checked = 0
    for _, row in _sample(frame).iterrows():
        t = row["event_timestamp"]
        label_ts = row["label_timestamp"]
        snapshot = t.floor("D")  # the latest UTC midnight <= t: the user/item snapshot Feast joined
        assert snapshot <= t
        if pd.notna(label_ts):
            assert label_ts > t  # labels come strictly after the decision time
        honest = recompute(row, snapshot, t)
        for name, expected in honest.items():
            assert _same(row[name], expected), f"row {row['row_id']} {name}: {row[name]!r} != {expected!r}"
            checked += 1
        if pd.notna(label_ts):
            # the same features computed by a pipeline that let the label event in
            leaky = recompute(row, label_ts + pd.Timedelta(microseconds=1), label_ts)
            for name, value in leaky.items():
                changed[name] = changed.get(name, 0) + int(not _same(row[name], value))
    assert checked >= SAMPLE * per_row
    return changed


def test_propensity_features_use_only_events_before_the_decision_time(
    env: tuple[Settings, Any, pd.DataFrame], propensity: tuple[pd.DataFrame, dict[str, Any]]
) -> None:
    _, _, events = env
    frame = propensity[0]

    def recompute(row: pd.Series, snapshot: pd.Timestamp, upto: pd.Timestamp) -> dict[str, Any]:
        user_times = events.loc[events["user_id"] == row["user_id"], "event_timestamp"]
        item_times = events.loc[events["item_id"] == row["item_id"], "event_timestamp"]
        user = _user_features(events, row["user_id"], _joined_snapshot(user_times, snapshot, upto, USER_WINDOW))
        item = _item_features(events, row["item_id"], _joined_snapshot(item_times, snapshot, upto, ITEM_WINDOW))
        avg = user.pop("avg_viewed_price_30d", np.nan)
        session = _session_features(events, row["session_id"], upto)
        for name in ("session_last_item_ids", "session_last_event_ts", "session_last_category_ids"):
            session.pop(name)  # not in purchase_propensity_v1
        ratio = row["candidate_price"] / avg if avg == avg and avg > 0 else 1.0
        moment = datetime.fromtimestamp(int(row["request_ts"]), UTC)
        return {
            **user,
            **item,
            **session,
            "price_vs_user_avg_viewed": ratio,
            "request_hour": moment.hour,
        }

    assert frame["label"].sum() > 50
    changed = _check_no_leakage(frame, recompute)
    # the check has teeth: letting the label purchase in would change these for some rows
    assert changed["session_purchases"] > 0
    assert changed["session_events"] > 0
    assert changed["purchases_30d"] > 0
    assert changed["views_7d"] > 0


def test_next_action_features_use_only_events_before_the_decision_time(
    env: tuple[Settings, Any, pd.DataFrame], next_action: tuple[pd.DataFrame, dict[str, Any]]
) -> None:
    _, _, events = env
    frame = next_action[0]

    def recompute(row: pd.Series, snapshot: pd.Timestamp, upto: pd.Timestamp) -> dict[str, Any]:
        user_times = events.loc[events["user_id"] == row["user_id"], "event_timestamp"]
        user = _user_features(events, row["user_id"], _joined_snapshot(user_times, snapshot, upto, USER_WINDOW))
        user.pop("avg_viewed_price_30d", None)
        return {**user, **_session_features(events, row["session_id"], upto)}

    changed = _check_no_leakage(frame, recompute)
    assert changed["session_events"] > 0
    assert changed["session_last_item_ids"] > 0
    assert changed["session_last_event_ts"] > 0
    assert changed["seconds_since_last_event"] > 0


def test_next_item_training_set_has_the_session_lists_and_summarises_the_labels(
    env: tuple[Settings, Any, pd.DataFrame], next_item: tuple[pd.DataFrame, dict[str, Any]]
) -> None:
    _, store, _ = env
    frame, meta = next_item
    entities = ["row_id", "event_id", "event_timestamp", "user_id", "session_id", "label", "label_timestamp"]
    assert service_features(store, NEXT_ITEM_V1) == ["session_last_item_ids", "session_last_event_types"]
    assert list(frame.columns) == [*entities, "session_last_item_ids", "session_last_event_types"]
    assert meta["rows"] == len(frame) > 1_000
    # one label per item would list the catalogue: a summary instead
    assert meta["labels"] == {
        "distinct_items": frame["label"].nunique(),
        "top_item_share": pytest.approx(frame["label"].value_counts(normalize=True).iloc[0], abs=1e-6),
    }
    assert 0 < meta["labels"]["top_item_share"] < 1
    assert meta["rows_missing_view"]["session_activity"] == 0  # every example has its session state


def test_next_item_features_use_only_events_before_the_decision_time(
    env: tuple[Settings, Any, pd.DataFrame], next_item: tuple[pd.DataFrame, dict[str, Any]]
) -> None:
    _, _, events = env
    frame = next_item[0]

    def recompute(row: pd.Series, snapshot: pd.Timestamp, upto: pd.Timestamp) -> dict[str, Any]:
        mine = events[(events["session_id"] == row["session_id"]) & (events["event_timestamp"] <= upto)]
        return {
            "session_last_item_ids": list(mine["item_id"].tail(LAST_N_EVENTS)),
            "session_last_event_types": list(mine["event_type"].tail(LAST_N_EVENTS)),
        }

    changed = _check_no_leakage(frame, recompute, per_row=2)
    assert changed["session_last_item_ids"] > 0  # letting the label event in would show its item
    by_event = events.set_index("event_id")
    sample = frame.sample(SAMPLE, random_state=2)
    for _, row in sample.iterrows():
        later = events[
            (events["session_id"] == row["session_id"]) & (events["event_timestamp"] > row["event_timestamp"])
        ]
        assert row["label"] == later.sort_values(["event_timestamp", "event_id"])["item_id"].iloc[0]
        assert list(row["session_last_item_ids"])[-1] == by_event.loc[row["event_id"], "item_id"]
