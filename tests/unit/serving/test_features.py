"""The lean reader returns exactly what Feast's `get_online_features(...).to_dict()` returns (local profile, SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from journey import contracts as c
from journey.errors import InvalidInputError
from journey.settings import get_settings
from serving.features import OnlineFeatureReader
from tests.factories.online import NOW, REQUEST_TS, assert_same_as_feast, frame, propensity_row

USERS, ITEMS, SESSIONS = range(10), range(150), [f"s{u}" for u in range(10)]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One applied local store per module (apply costs seconds), populated through Feast's write path."""
    from journey.stores.feature_store import apply, open_store

    data_dir: Path = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JOURNEY_DATA_DIR", str(data_dir))
        mp.delenv("JOURNEY_PROFILE", raising=False)
        get_settings.cache_clear()
        settings = get_settings()
        apply(settings)
        fs = open_store(settings)
        fs.write_to_online_store(c.USER_ACTIVITY, frame(c.USER, list(USERS), c.USER_ACTIVITY_FEATURES, NOW))
        items = frame(c.ITEM, list(ITEMS), c.ITEM_POPULARITY_FEATURES, NOW - timedelta(hours=1))
        fs.write_to_online_store(c.ITEM_POPULARITY, items)
        sessions = frame(c.SESSION, SESSIONS, c.SESSION_ACTIVITY_FEATURES, NOW - timedelta(minutes=5))
        sessions[c.USER] = np.arange(len(SESSIONS)) + 100  # differs from the request's user_id on purpose
        fs.write_to_online_store(c.SESSION_ACTIVITY, sessions)
        yield fs
    get_settings.cache_clear()


def test_known_entities_equal_feast_for_purchase_propensity(store: Any) -> None:
    out = assert_same_as_feast(store, c.PURCHASE_PROPENSITY_V1, [propensity_row(1, 2), propensity_row(4, 7)])
    assert set(out) == {c.USER, c.ITEM, c.SESSION} | set(c.USER_ACTIVITY_FEATURES) | set(c.ITEM_POPULARITY_FEATURES) | {
        "session_events",
        "session_views",
        "session_carts",
        "session_purchases",
        "session_seconds_since_start",
    } | set(c.REQUEST_CONTEXT_FEATURES) | set(c.SESSION_ITEM_CONTEXT_FEATURES)
    assert out["views_1d"] == [1, 4] and out["item_category_id"] == [14, 49]


def test_known_entities_equal_feast_for_next_action(store: Any) -> None:
    out = assert_same_as_feast(store, c.NEXT_ACTION_V1, [{c.USER: 2, c.SESSION: "s2"}, {c.USER: 3, c.SESSION: "s5"}])
    assert out["session_last_item_ids"] == [[0, 1], [0]]
    # next_action_v1 projects the session features only, so `user_id` is the request's join key, not the view's column
    assert out[c.USER] == [2, 3]


@pytest.mark.parametrize("service", [c.PURCHASE_PROPENSITY_V1, c.NEXT_ACTION_V1])
def test_unknown_entities_read_as_none_like_feast(store: Any, service: str) -> None:
    rows = [propensity_row(999, 99_999), propensity_row(3, 5)]
    if service == c.NEXT_ACTION_V1:
        rows = [{c.USER: 999, c.SESSION: "nope"}, {c.USER: 3, c.SESSION: "s3"}]
    out = assert_same_as_feast(store, service, rows)
    assert out["views_30d"][0] is None and out["views_30d"][1] == 9
    assert out["session_events"][0] is None


def test_one_user_by_a_hundred_items_equals_feast(store: Any) -> None:
    items = [*range(0, 180, 2), 4, 4, 4, 8, 10, 10, 10, 148, 149, 77]  # 100 rows: repeats, and unknown items >= 150
    out = assert_same_as_feast(store, c.PURCHASE_PROPENSITY_V1, [propensity_row(6, i, 5.0 + i) for i in items])
    assert len(out[c.ITEM]) == 100 and out["item_views_7d"][-1] == 77 and out["item_views_7d"][89] is None


@pytest.mark.parametrize(
    ("price", "ts"),
    [
        (19.5, REQUEST_TS),
        (20, REQUEST_TS + 3_600 * 13),  # an int price: Feast infers int64 from the first value
        (np.float64(7.25), np.int64(REQUEST_TS)),  # numpy scalars: Feast's round trip turns them into python
        (0.0, 0),
    ],
)
def test_request_time_inputs_feed_the_on_demand_view_like_feast(store: Any, price: Any, ts: Any) -> None:
    rows = [propensity_row(u, u, price, ts) for u in (0, 1, 2, 999)]  # user 0 and 999: no average viewed price
    out = assert_same_as_feast(store, c.PURCHASE_PROPENSITY_V1, rows)
    assert out["request_hour"] == [datetime.fromtimestamp(int(ts), UTC).hour] * 4
    assert out["price_vs_user_avg_viewed"][0] == 1.0 and out["price_vs_user_avg_viewed"][3] == 1.0


def test_timestamps_report_each_views_event_time(store: Any) -> None:
    reader = OnlineFeatureReader(store, c.PURCHASE_PROPENSITY_V1)
    values, stamps = reader.read_with_timestamps([propensity_row(1, 1), propensity_row(999, 2)])
    assert values == reader.read([propensity_row(1, 1), propensity_row(999, 2)])
    assert stamps == {
        c.USER_ACTIVITY: [NOW, None],
        c.ITEM_POPULARITY: [NOW - timedelta(hours=1)] * 2,
        c.SESSION_ACTIVITY: [NOW - timedelta(minutes=5), None],
    }


def test_missing_inputs_are_named(store: Any) -> None:
    reader = OnlineFeatureReader(store, c.PURCHASE_PROPENSITY_V1)
    with pytest.raises(InvalidInputError, match="request data") as exc:
        reader.read([{c.USER: 1, c.ITEM: 1, c.SESSION: "s1", "candidate_price": 1.0, "candidate_item_id": 1}])
    assert exc.value.field == "request_ts"
    with pytest.raises(InvalidInputError) as exc:
        reader.read([{c.USER: 1, c.SESSION: "s1", "candidate_price": 1.0, "request_ts": 0, "candidate_item_id": 1}])
    assert exc.value.field == c.ITEM
    with pytest.raises(InvalidInputError, match="all have the keys"):
        reader.read([propensity_row(1, 1), {c.USER: 1}])
