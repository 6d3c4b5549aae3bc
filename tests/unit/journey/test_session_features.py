"""Session rows: the state after each event, and a pushed continuation that equals a replay of the whole session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from journey.contracts import LAST_N_EVENTS, SESSION_ACTIVITY_FEATURES
from journey.events import EVENT_SCHEMA
from journey.session_features import NO_CATEGORY, SESSION_ROW_SCHEMA, latest_per_session, session_rows

T0 = datetime(2026, 9, 3, 10, 0, tzinfo=UTC)
LISTS = [name for name, kind in SESSION_ACTIVITY_FEATURES.items() if kind.endswith("_list")]
COUNTERS = ["session_events", "session_views", "session_carts", "session_purchases"]


def _events(rows: list[tuple[str, str, int, str, float, int | None]]) -> pa.Table:
    """(event_id, session, item, type, seconds after T0, category) -> canonical events of user 1."""
    return pa.table(
        {
            "event_id": [r[0] for r in rows],
            "user_id": [1] * len(rows),
            "session_id": [r[1] for r in rows],
            "item_id": [r[2] for r in rows],
            "event_type": [r[3] for r in rows],
            "event_timestamp": [T0 + timedelta(seconds=r[4]) for r in rows],
            "price": [1.0] * len(rows),
            "category_id": [r[5] for r in rows],
        },
        schema=EVENT_SCHEMA,
    )


def _long_sessions(n: int) -> pa.Table:
    """Two interleaved sessions of n events each; fractional seconds and some events without a category."""
    kinds = ["view", "view", "add_to_cart", "view", "purchase", "remove_from_cart"]
    rows = [
        (f"{s}{i}", s, 100 + (i * 7) % 11, kinds[i % len(kinds)], 13.25 * i + (0.5 if s == "B" else 0.0), i % 5 or None)
        for i in range(n)
        for s in ("A", "B")
    ]
    return _events(rows)


def _by_event(rows: pa.Table) -> dict[tuple[str, datetime], dict[str, object]]:
    return {(r["session_id"], r["event_timestamp"]): r for r in rows.to_pylist()}


def test_lists_hold_each_events_item_type_time_and_category_newest_last() -> None:
    events = _events([("a1", "A", 10, "view", 0.9, 3), ("a2", "A", 11, "add_to_cart", 61.2, None)])

    rows = session_rows(events).to_pylist()

    assert rows[1]["session_last_item_ids"] == [10, 11]
    assert rows[1]["session_last_event_types"] == ["view", "add_to_cart"]
    start = int(T0.timestamp())
    assert rows[1]["session_last_event_ts"] == [start, start + 61]  # whole unix seconds (floored)
    assert rows[1]["session_last_category_ids"] == [3, NO_CATEGORY]  # a null category is -1
    assert rows[0]["session_last_event_ts"] == [start]
    assert session_rows(events).schema == SESSION_ROW_SCHEMA


def test_every_list_is_cut_to_the_last_n_events_and_stays_aligned() -> None:
    rows = session_rows(_long_sessions(LAST_N_EVENTS + 7)).to_pylist()
    last = [r for r in rows if r["session_id"] == "A"][-1]
    assert {len(last[name]) for name in LISTS} == {LAST_N_EVENTS}
    assert last["session_events"] == LAST_N_EVENTS + 7
    start = int(T0.timestamp())
    first_kept = 7
    assert last["session_last_event_ts"][0] == start + int(13.25 * first_kept)
    assert last["session_last_item_ids"][0] == 100 + (first_kept * 7) % 11


@pytest.mark.parametrize("cut", [1, 5, LAST_N_EVENTS + 3])
def test_a_pushed_continuation_gives_the_rows_of_a_full_replay(cut: int) -> None:
    events = _long_sessions(LAST_N_EVENTS + 10)
    full = _by_event(session_rows(events))
    ordered = events.sort_by("event_timestamp")
    head, tail = ordered.slice(0, cut), ordered.slice(cut)
    # the online store keeps the newest row per session, its event time in whole seconds
    prior = latest_per_session(session_rows(head))
    seconds = pc.cast(prior["event_timestamp"], pa.int64()).to_numpy() // 1_000_000 * 1_000_000
    prior = prior.set_column(
        prior.schema.get_field_index("event_timestamp"),
        "event_timestamp",
        pa.array(seconds, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
    )

    continued = _by_event(session_rows(tail, prior=prior))

    assert len(continued) == tail.num_rows
    for key, row in continued.items():
        for name in [*LISTS, *COUNTERS]:
            assert row[name] == full[key][name], (key, name)


def test_a_state_stored_before_the_time_and_category_lists_existed_continues() -> None:
    """An online row written by the previous version reads back with null lists for the new features."""
    head = session_rows(_events([("a1", "A", 10, "view", 0, 3), ("a2", "A", 11, "view", 30, 4)]))
    prior = latest_per_session(head)
    for name in ("session_last_event_ts", "session_last_category_ids"):
        prior = prior.set_column(prior.schema.get_field_index(name), name, pa.nulls(1, pa.list_(pa.int64())))

    (row,) = session_rows(_events([("a3", "A", 12, "purchase", 90, 5)]), prior=prior).to_pylist()

    start = int(T0.timestamp())
    assert row["session_last_item_ids"] == [10, 11, 12]
    assert row["session_last_event_ts"] == [start + 30, start + 30, start + 90]  # the state's own time for both
    assert row["session_last_category_ids"] == [NO_CATEGORY, NO_CATEGORY, 5]
    assert row["session_events"] == 3
