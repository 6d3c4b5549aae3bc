"""Examples and labels from hand-made events (no Feast): what each model is asked, when, and what counts as its
answer; censored examples dropped, sampling capped and reproducible."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from journey.contracts import NEXT_ITEM_V1
from journey.datasets.synthetic import SyntheticConfig, generate
from journey.errors import InvalidInputError
from journey.events import EVENT_SCHEMA
from training.labels import (
    ENTITY_BUILDERS,
    EXIT,
    next_action_entities,
    next_item_entities,
    propensity_entities,
)

T0 = datetime(2026, 9, 3, 10, 0, tzinfo=UTC)


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
