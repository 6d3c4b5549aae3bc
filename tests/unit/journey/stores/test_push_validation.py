"""One rejection rule for JSON events (journey.stores.push.validate_records): every problem inside one event is a
reject of that event with row, field, value and reason; the others pass."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from journey.stores.push import validate_records

NOW = datetime(2026, 11, 23, 18, tzinfo=UTC)


def good(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "user_id": 7,
        "session_id": "s",
        "item_id": 3,
        "event_type": "view",
        "event_timestamp": "2026-11-23T17:00:00Z",
        "price": 9.5,
        "category_id": 4,
    } | fields


def _rejects(records: list[Any]) -> list[tuple[int, str, str | None, str]]:
    result = validate_records(records, now=NOW)
    return [(r["row"], r["field"], r["value"], r["reason"]) for r in result.rejects.to_pylist()]


def test_shape_problems_are_per_row_rejects_and_the_good_events_pass() -> None:
    missing = {k: v for k, v in good(2).items() if k != "item_id"}
    records = [good(1), missing, good(3, colour="red"), "not an event", good(5, user_id=[1]), good(6)]

    result = validate_records(records, now=NOW)

    assert result.valid["event_id"].to_pylist() == ["e1", "e6"] and result.rows_in == 6
    assert _rejects(records) == [
        (2, "item_id", None, "missing_field"),
        (3, "colour", "red", "unknown_field"),
        (4, "event", "str", "not_an_object"),
        (5, "user_id", "[1]", "wrong_type"),
    ]


def test_nulls_in_required_fields_are_missing_and_in_optional_ones_are_allowed() -> None:
    records = [good(1, session_id=None), good(2, price=None, category_id=None)]

    assert _rejects(records) == [(1, "session_id", None, "missing_field")]


def test_wrong_types_are_named_even_for_optional_fields() -> None:
    records = [good(1, price="cheap"), good(2, category_id=True), good(3, event_timestamp=17)]

    assert _rejects(records) == [
        (1, "price", "cheap", "wrong_type"),
        (2, "category_id", "True", "wrong_type"),
        (3, "event_timestamp", "17", "wrong_type"),
    ]


def test_value_problems_keep_their_rows_after_shape_rejects() -> None:
    records = [good(1, colour="red"), good(2, event_type="teleport"), good(3, event_timestamp="yesterday")]

    assert _rejects(records) == [
        (1, "colour", "red", "unknown_field"),
        (2, "event_type", "teleport", "unknown_event_type"),
        (3, "event_timestamp", "yesterday", "unparsable_timestamp"),
    ]


def test_a_batch_where_every_event_is_bad_validates_to_no_rows() -> None:
    result = validate_records(["x", {"colour": "red"}], now=NOW)

    assert result.valid.num_rows == 0 and result.rows_rejected == 2


def test_ids_beyond_64_bits_and_text_no_store_can_hold_are_wrong_types() -> None:
    records = [
        good(1, user_id=2**70),
        good(2, category_id=-(2**64)),
        good(3, session_id="s\ud9b8"),
        good(4, event_id="e\x004"),
    ]

    assert _rejects(records) == [
        (1, "user_id", str(2**70), "wrong_type"),
        (2, "category_id", str(-(2**64)), "wrong_type"),
        (3, "session_id", "s\\ud9b8", "wrong_type"),  # shown escaped
        (4, "event_id", "e\x004", "wrong_type"),
    ]


def test_a_timestamp_whose_offset_leaves_the_calendar_is_unparsable_not_a_crash() -> None:
    records = [
        good(1, event_timestamp="0001-01-01T00:00:00+14:00"),
        good(2, event_timestamp="9999-12-31T23:59:59-14:00"),
    ]

    assert [reason for *_, reason in _rejects(records)] == ["unparsable_timestamp", "unparsable_timestamp"]
