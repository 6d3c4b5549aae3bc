"""Training sets: the re-join around Feast's point-in-time join, and no leakage (labels alone: test_labels.py).

The tests run the real pipeline on a small synthetic dataset (local profile, temporary data dir): batch
features, session history, `feast apply`, `build_training_set`. The no-leakage tests recompute, in plain pandas
from the raw events, every feature a sampled row carries, and check both that it equals the training-set value
and that a leaky computation (one that includes the label event) would differ for some rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from journey.contracts import LAST_N_EVENTS, NEXT_ACTION_V1, NEXT_ITEM_V1, PURCHASE_PROPENSITY_V1
from journey.datasets.store import DatasetStore
from journey.datasets.synthetic import SyntheticConfig, generate
from journey.errors import InvalidInputError
from journey.settings import Profile, Settings
from training.datasets import build_training_set, write_session_history
from training.labels import propensity_entities
from training.retrieval import service_features, training_set

DATASET = "tiny"
SAMPLE = 200


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
    apply(settings)  # the feature repo's sources are built from these settings, not the environment
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
