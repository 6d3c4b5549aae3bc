"""The lean reader on the real Redis (prod profile): equal to Feast's `get_online_features(...).to_dict()`, and fast
to fail when Redis is down or hangs."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from journey import contracts as c
from journey.errors import ServiceUnavailableError
from serving.features import OnlineFeatureReader
from tests.factories.online import NOW, REQUEST_TS, assert_same_as_feast, frame, propensity_row

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(prod_store: Any) -> Iterator[Any]:
    """10 users and sessions, 150 items, written with Feast's own write path."""
    prod_store.write_to_online_store(c.USER_ACTIVITY, frame(c.USER, list(range(10)), c.USER_ACTIVITY_FEATURES, NOW))
    items = frame(c.ITEM, list(range(150)), c.ITEM_POPULARITY_FEATURES, NOW - timedelta(hours=1))
    prod_store.write_to_online_store(c.ITEM_POPULARITY, items)
    sessions = frame(c.SESSION, [f"s{u}" for u in range(10)], c.SESSION_ACTIVITY_FEATURES, NOW - timedelta(minutes=5))
    sessions[c.USER] = np.arange(10) + 100
    prod_store.write_to_online_store(c.SESSION_ACTIVITY, sessions)
    yield prod_store


def test_purchase_propensity_equals_feast_for_known_and_unknown_entities(store: Any) -> None:
    out = assert_same_as_feast(store, c.PURCHASE_PROPENSITY_V1, [propensity_row(1, 2), propensity_row(999, 99_999)])
    assert out["views_1d"] == [1, None] and out["item_category_id"] == [14, None]
    assert out["price_vs_user_avg_viewed"][1] == 1.0


def test_next_action_equals_feast_for_known_and_unknown_entities(store: Any) -> None:
    rows = [{c.USER: 2, c.SESSION: "s2"}, {c.USER: 3, c.SESSION: "nope"}]
    out = assert_same_as_feast(store, c.NEXT_ACTION_V1, rows)
    assert out["session_last_item_ids"] == [[0, 1], None] and out["views_30d"] == [6, 9]


def test_one_user_by_a_hundred_items_equals_feast(store: Any) -> None:
    items = [*range(0, 180, 2), 4, 4, 4, 8, 10, 10, 10, 148, 149, 77]
    out = assert_same_as_feast(store, c.PURCHASE_PROPENSITY_V1, [propensity_row(6, i, 5.0 + i) for i in items])
    assert len(out[c.ITEM]) == 100 and out["item_views_7d"][-1] == 77 and out["item_views_7d"][89] is None


def test_reader_reloads_its_script_after_redis_forgot_it(store: Any) -> None:
    reader = OnlineFeatureReader(store, c.PURCHASE_PROPENSITY_V1)
    rows = [propensity_row(1, i) for i in range(5)]
    before = reader.read(rows)
    reader._redis.script_flush()  # what a restarted Redis (no persistence) has forgotten
    assert reader.read(rows) == before
    assert_same_as_feast(store, c.PURCHASE_PROPENSITY_V1, rows)


@pytest.mark.parametrize(("price", "ts"), [(20, REQUEST_TS + 13 * 3_600), (np.float64(7.25), np.int64(REQUEST_TS))])
def test_request_time_inputs_feed_the_on_demand_view_like_feast(store: Any, price: Any, ts: Any) -> None:
    out = assert_same_as_feast(store, c.PURCHASE_PROPENSITY_V1, [propensity_row(u, u, price, ts) for u in (0, 1, 999)])
    assert out["request_hour"] == [datetime.fromtimestamp(int(ts), UTC).hour] * 3


def test_timestamps_report_each_views_event_time(store: Any) -> None:
    _, stamps = OnlineFeatureReader(store, c.PURCHASE_PROPENSITY_V1).read_with_timestamps(
        [propensity_row(1, 1), propensity_row(999, 2)]
    )
    assert stamps == {
        c.USER_ACTIVITY: [NOW, None],
        c.ITEM_POPULARITY: [NOW - timedelta(hours=1)] * 2,
        c.SESSION_ACTIVITY: [NOW - timedelta(minutes=5), None],
    }


def test_unreachable_redis_fails_fast_as_service_unavailable(store_with_redis_at: Callable[[str], Any]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    reader = OnlineFeatureReader(
        store_with_redis_at(f"redis://127.0.0.1:{port}/0"), c.PURCHASE_PROPENSITY_V1, timeout_s=0.2
    )
    start = time.perf_counter()
    with pytest.raises(ServiceUnavailableError, match="Redis"):
        reader.read([propensity_row(1, 1)])
    assert time.perf_counter() - start < 1.0


def test_hung_redis_times_out_as_service_unavailable(store_with_redis_at: Callable[[str], Any]) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        hung = store_with_redis_at(f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        reader = OnlineFeatureReader(hung, c.PURCHASE_PROPENSITY_V1, timeout_s=0.2)
        start = time.perf_counter()
        with pytest.raises(ServiceUnavailableError, match="Redis"):
            reader.read([propensity_row(1, 1)])
        assert time.perf_counter() - start < 2.0  # timeout 0.2 s, one retry: ~0.4 s


def test_after_a_failure_the_store_is_left_alone_until_retry_after(store_with_redis_at: Callable[[str], Any]) -> None:
    """Serving reads on its event loop: a hung Redis must cost one timeout per `retry_after_s`, not one per request."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        hung = store_with_redis_at(f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        reader = OnlineFeatureReader(hung, c.PURCHASE_PROPENSITY_V1, timeout_s=0.1, retry_after_s=0.3)
        with pytest.raises(ServiceUnavailableError, match="unreachable or too slow"):
            reader.read([propensity_row(1, 1)])
        with pytest.raises(ServiceUnavailableError, match="failed just now"):  # not asked: answered at once
            reader.read([propensity_row(1, 1)])
        time.sleep(0.35)
        with pytest.raises(ServiceUnavailableError, match="unreachable or too slow"):  # asked again
            reader.read([propensity_row(1, 1)])
