"""Purchases against the views of their item: buckets by hand, the material note and its --horizon, the report."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from journey.events import EVENT_SCHEMA
from journey.stages import session_order
from training.analysis.delays import BUCKETS, MATERIAL_COUNT, purchase_delays
from training.analysis.journey import analyze_events
from training.analysis.report import write_report
from training.labels import propensity_entities

T0 = datetime(2026, 9, 1, tzinfo=UTC)


def table(rows: Sequence[tuple[int, str, int, str, float]]) -> pa.Table:
    """(user, session, item, type, hours after T0) rows."""
    return pa.table(
        {
            "event_id": [f"e{i:04d}" for i in range(len(rows))],
            "user_id": [r[0] for r in rows],
            "session_id": [r[1] for r in rows],
            "item_id": [r[2] for r in rows],
            "event_type": [r[3] for r in rows],
            "event_timestamp": [T0 + timedelta(hours=r[4]) for r in rows],
            "price": [1.0] * len(rows),
            "category_id": [1] * len(rows),
        },
        schema=EVENT_SCHEMA,
    )


HAND = [
    (1, "1a", 10, "view", 0.0),
    (1, "1a", 10, "purchase", 0.1),  # same session
    (2, "2a", 20, "view", 0.0),
    (2, "2b", 20, "purchase", 5.0),  # another session, 5 h
    (3, "3a", 30, "view", 0.0),
    (3, "3b", 30, "view", 30.0),
    (3, "3c", 30, "purchase", 30.0 + 72),  # 3 days after the last view, 4.25 days after the first
    (4, "4a", 40, "view", 0.0),
    (4, "4b", 40, "purchase", 24.0 * 10),  # 10 days
    (5, "5a", 51, "view", 0.5),
    (5, "5a", 50, "purchase", 1.0),  # item 50 never viewed by user 5 ...
    (6, "6a", 50, "view", 0.0),  # ... another user's view of it does not count
    (7, "7a", 70, "view", 2.0),
    (7, "7a", 70, "purchase", 2.0),  # a view in the same second counts as before
]


def test_each_purchase_is_bucketed_by_its_last_and_first_view() -> None:
    delays = purchase_delays(session_order(table(HAND)))
    assert delays.purchases == 6
    assert dict(zip(BUCKETS, delays.counts("last"), strict=True)) == {
        "same session": 2,
        "another session, < 1 day": 1,
        "1-7 days": 1,
        "> 7 days": 1,
        "no view before": 1,
    }
    assert delays.counts("first") == [2, 1, 1, 1, 1]
    last = sorted(np.nan_to_num(delays.last_hours, nan=-1).tolist())
    assert last == pytest.approx([-1, 0.0, 0.1, 5.0, 72.0, 240.0])
    assert 30.0 + 72 in delays.first_hours.tolist()
    assert delays.later_share() == pytest.approx(2 / 6) and delays.other_session_share() == pytest.approx(3 / 6)
    assert not delays.material()  # half the purchases, but fewer than MATERIAL_COUNT of them
    assert delays.to_dict()["recommended_horizon"] is None


def returning_buyers(users: int = 40, late: int = 12, days: float = 3.0) -> pa.Table:
    """Every user views an item; `late` of them buy it `days` later in a new session, two buy it at once."""
    rows: list[tuple[int, str, int, str, float]] = []
    for u in range(users):
        start = 24.0 * (u % 5)
        rows += [(u, f"{u}a", u, "view", start), (u, f"{u}a", 1000 + u, "view", start + 0.05)]
        if u < late:
            rows.append((u, f"{u}b", u, "purchase", start + 24 * days))
        elif u < late + 2:
            rows.append((u, f"{u}a", u, "purchase", start + 0.1))
    rows.append((999, "end", 5, "view", 24.0 * 40))  # the data goes on well after the purchases
    return table(rows)


def test_purchases_days_after_the_views_are_material_and_get_a_horizon(tmp_path: Path) -> None:
    analysis = analyze_events(returning_buyers(), dataset="returning")
    delays = analysis.delays
    assert delays is not None and delays.purchases == 14 and delays.material()
    assert delays.counts("last")[BUCKETS.index("1-7 days")] == 12 >= MATERIAL_COUNT
    assert delays.horizon_days() == 7
    note = delays.note()
    assert note is not None and "--horizon 7d" in note and "12 of 14 purchases (86%)" in note
    assert note in analysis.notes and analysis.to_dict()["purchase_delays"]["recommended_horizon"] == "7d"
    report, _ = write_report(analysis, tmp_path)
    text = report.read_text(encoding="utf-8")
    assert "## Purchases and the views before them" in text and "Delayed purchases are material here" in text
    assert "| 1-7 days | 12 | 85.7% |" in text
    # the session-scoped propensity label indeed misses them, and the recommended horizon finds them
    events = returning_buyers()
    in_session = propensity_entities(events, horizon="session", max_per_session=None, max_examples=None)
    week = propensity_entities(events, horizon=timedelta(days=7), max_per_session=None, max_examples=None)
    assert int(in_session["label"].sum()) == 2 and int(week["label"].sum()) == 14


def test_purchases_in_their_session_are_not_material() -> None:
    delays = purchase_delays(session_order(returning_buyers(late=0)))
    assert delays.purchases == 2 and delays.counts("last")[0] == 2 and not delays.material()
    assert delays.note() is None and delays.later_share() == 0.0


def test_no_purchase_gives_an_empty_table() -> None:
    delays = purchase_delays(session_order(table([(1, "a", 1, "view", 0.0)])))
    assert delays.purchases == 0 and delays.counts() == [0] * len(BUCKETS) and not delays.material()
    assert delays.summary()["hours_from_last_view_median"] is None
