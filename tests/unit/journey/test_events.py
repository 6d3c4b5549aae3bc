from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from journey.errors import BadEventError
from journey.events import (
    EVENT_SCHEMA,
    RejectReason,
    canonicalize,
    duplicate_mask,
    events_from_records,
    to_utc_micros,
    validate_events,
)

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def event(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": "e1",
        "user_id": 1,
        "session_id": "s1",
        "item_id": 10,
        "event_type": "view",
        "event_timestamp": "2026-01-01T10:00:00+00:00",
        "price": 9.5,
        "category_id": 3,
    }
    base.update(overrides)
    return base


def validate(records: list[dict[str, object]], **kw: object):
    return validate_events(events_from_records(records), now=NOW, **kw)  # type: ignore[arg-type]


def test_a_clean_event_passes_unchanged() -> None:
    result = validate([event()])
    assert result.rows_rejected == 0
    assert canonicalize(result.valid).schema == EVENT_SCHEMA


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"event_type": "click"}, "event_type", RejectReason.UNKNOWN_EVENT_TYPE),
        ({"event_type": None}, "event_type", RejectReason.UNKNOWN_EVENT_TYPE),
        ({"event_id": None}, "event_id", RejectReason.MISSING_ID),
        ({"event_id": ""}, "event_id", RejectReason.MISSING_ID),
        ({"user_id": None}, "user_id", RejectReason.MISSING_ID),
        ({"item_id": None}, "item_id", RejectReason.MISSING_ID),
        ({"session_id": None}, "session_id", RejectReason.MISSING_ID),
        ({"event_timestamp": "yesterday"}, "event_timestamp", RejectReason.UNPARSABLE_TIMESTAMP),
        ({"event_timestamp": None}, "event_timestamp", RejectReason.UNPARSABLE_TIMESTAMP),
        ({"event_timestamp": "2026-01-02T00:00:00+00:00"}, "event_timestamp", RejectReason.FUTURE_TIMESTAMP),
        ({"price": -1.0}, "price", RejectReason.NEGATIVE_PRICE),
    ],
)
def test_each_bad_row_is_reported_with_its_reason(
    overrides: dict[str, object], field: str, reason: RejectReason
) -> None:
    result = validate([event(event_id="ok"), event(**overrides)])
    assert result.valid["event_id"].to_pylist() == ["ok"]
    rejects = result.rejects.to_pylist()
    assert [(r["row"], r["field"], r["reason"]) for r in rejects] == [(2, field, reason.value)]


def test_duplicate_event_id_keeps_the_first_and_reports_the_rest() -> None:
    result = validate([event(event_id="a"), event(event_id="b"), event(event_id="a"), event(event_id="a")])
    assert result.valid["event_id"].to_pylist() == ["a", "b"]
    assert result.rejects["row"].to_pylist() == [3, 4]
    assert set(result.rejects["reason"].to_pylist()) == {"duplicate_event_id"}


def test_a_bad_first_occurrence_does_not_make_the_good_twin_a_duplicate() -> None:
    result = validate([event(event_id="a", price=-1.0), event(event_id="a")])
    assert result.valid.num_rows == 1
    assert result.counts_by_reason() == {"negative_price": 1}


def test_clock_skew_within_tolerance_is_accepted() -> None:
    ts = (NOW + timedelta(minutes=2)).isoformat()
    assert validate([event(event_timestamp=ts)]).rows_rejected == 0


def test_a_row_with_several_problems_reports_each_and_counts_once() -> None:
    result = validate([event(event_type="click", price=-2.0, user_id=None)])
    assert result.rows_rejected == 1
    assert sorted(result.rejects["reason"].to_pylist()) == [
        "missing_id",
        "negative_price",
        "unknown_event_type",
    ]


def test_no_row_is_dropped_silently() -> None:
    records = [event(event_id=str(i), price=float(i % 5 - 1)) for i in range(50)]
    result = validate(records)
    bad_rows = set(result.rejects["row"].to_pylist())
    assert result.valid.num_rows + len(bad_rows) == len(records)


def test_first_error_names_row_field_and_value() -> None:
    result = validate([event(event_id="x"), event(event_id="y", event_type="click")])
    error = result.first_error()
    assert isinstance(error, BadEventError)
    assert (error.row, error.field, error.value) == (2, "event_type", "click")
    assert "click" in str(error) and "event_type" in str(error)


def test_source_rows_map_positions_to_file_rows() -> None:
    result = validate([event(event_type="click")], source_rows=np.array([42]))
    assert result.rejects["row"].to_pylist() == [42]


def test_integer_content_keys_find_duplicates_like_strings() -> None:
    keys = np.array([5, 7, 5, 9, 7], dtype=np.uint64)
    assert duplicate_mask(keys).tolist() == [False, False, True, False, True]
    assert duplicate_mask(pa.array(["5", "7", "5", "9", "7"])).tolist() == [False, False, True, False, True]


def test_naive_timestamps_are_read_in_the_given_zone() -> None:
    naive = pa.array([datetime(2026, 1, 1, 10)], pa.timestamp("s"))
    assert to_utc_micros(naive, "Europe/Berlin").to_pylist()[0] == datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert to_utc_micros(naive).to_pylist()[0] == datetime(2026, 1, 1, 10, tzinfo=UTC)


def test_canonicalize_turns_integer_keys_into_prefixed_string_ids() -> None:
    table = events_from_records([event()]).set_column(0, "event_id", pa.array([123], pa.uint64()))
    assert canonicalize(table, event_id_prefix="rr-")["event_id"].to_pylist() == ["rr-000000000000007b"]


def test_duplicates_are_judged_among_good_rows_only() -> None:
    # "a" first appears on a bad row; its first good occurrence (row 3) is kept, the next one (row 4) is a duplicate
    result = validate([event(event_id="a", price=-1.0), event(event_id="b"), event(event_id="a"), event(event_id="a")])
    assert result.valid["event_id"].to_pylist() == ["b", "a"]
    assert [(r["row"], r["reason"]) for r in result.rejects.to_pylist()] == [
        (1, "negative_price"),
        (4, "duplicate_event_id"),
    ]


def test_null_ids_are_never_duplicates_of_each_other() -> None:
    assert duplicate_mask(pa.array([None, "x", None], pa.string())).tolist() == [False, False, False]
