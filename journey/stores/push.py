"""The real-time path: canonical events -> `session_activity` rows -> online store + push source's batch table.

Used by `journey features push` now and by the `/events` endpoint later. New events are folded onto the session's
stored state (read from the online store), so a session's counters continue across requests; every event's row is
appended to the push source's batch table (training sees the same history), only the newest row per session goes
to the online store. Offline rows are written by `journey.stores.offline` rather than Feast's offline push
because Feast's PostgreSQL offline store cannot write (no `offline_write_batch`), and one code path for both
profiles is simpler.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from journey.contracts import SESSION, SESSION_ACTIVITY, SESSION_ACTIVITY_FEATURES, USER
from journey.events import (
    EVENT_SCHEMA,
    REJECTS_SCHEMA,
    RejectReason,
    ValidationResult,
    canonicalize,
    events_from_records,
    validate_events,
)
from journey.session_features import SESSION_ROW_SCHEMA, latest_per_session, session_rows
from journey.stores.offline import OfflineTables
from journey.stores.online_write import write_online

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)

REQUIRED_FIELDS = frozenset({"event_id", "user_id", "session_id", "item_id", "event_type", "event_timestamp"})
KNOWN_FIELDS = frozenset(EVENT_SCHEMA.names)


@dataclass(frozen=True)
class PushResult:
    accepted: int
    rejected: int
    rejects: list[dict[str, Any]]
    sessions: int
    push_seconds: float  # time to make the rows visible online (and appended offline)
    lag_seconds: float | None  # now - newest event time: how stale the pushed state already is


INT64: Final = range(-(2**63), 2**63)


def _is_text(value: object) -> bool:
    """A string that every store can hold: valid Unicode (JSON's escapes can carry a lone surrogate) without NUL
    (PostgreSQL text cannot hold it)."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_int(value: object) -> bool:
    """A 64-bit integer, or text of one (a JSON client may quote ids); never a bool."""
    if isinstance(value, bool):
        return False
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    return isinstance(value, int) and value in INT64


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


FIELD_TYPES: Final[dict[str, tuple[str, Callable[[object], bool]]]] = {
    "event_id": ("a string", _is_text),
    "user_id": ("a 64-bit integer", _is_int),
    "session_id": ("a string", _is_text),
    "item_id": ("a 64-bit integer", _is_int),
    "event_type": ("a string", _is_text),
    "event_timestamp": ("an ISO 8601 date-time string", _is_text),
    "price": ("a number or null", _is_number),
    "category_id": ("a 64-bit integer or null", _is_int),
}


def field_rejects(records: Sequence[object]) -> tuple[list[int], list[dict[str, Any]]]:
    """Per event, what is wrong with its shape: not an object, an unknown field, a required field missing or null,
    a value of the wrong JSON type. Returns the positions of the events without such a problem (they go on to value
    validation) and one reject per problem (row 1-based). One rule for every problem inside one event: a reject of
    that event, never of the batch."""
    clean: list[int] = []
    rejects: list[dict[str, Any]] = []

    def reject(i: int, fld: str, value: object, reason: RejectReason) -> None:
        # shown as text any store can hold: a lone surrogate becomes its escape
        shown = None if value is None else str(value)[:200].encode("utf-8", "backslashreplace").decode()
        rejects.append({"row": i + 1, "field": fld, "value": shown, "reason": reason.value})

    for i, record in enumerate(records):
        before = len(rejects)
        if not isinstance(record, Mapping):
            reject(i, "event", type(record).__name__, RejectReason.NOT_AN_OBJECT)
            continue
        for name in sorted(set(record) - KNOWN_FIELDS):
            reject(i, str(name), record[name], RejectReason.UNKNOWN_FIELD)
        for name in sorted(REQUIRED_FIELDS):
            if record.get(name) is None:
                reject(i, name, None, RejectReason.MISSING_FIELD)
        for name, (_, ok) in FIELD_TYPES.items():
            value = record.get(name)
            if value is not None and not ok(value):
                reject(i, name, value, RejectReason.WRONG_TYPE)
        if len(rejects) == before:
            clean.append(i)
    return clean, rejects


def validate_records(records: Sequence[object], now: datetime | None = None) -> ValidationResult:
    """Shape checks per event (`field_rejects`), then value checks (journey.events.validate_events) on the events
    that passed them; every reject carries the event's position in `records`."""
    clean, shape_rejects = field_rejects(records)
    kept = [dict(cast(Mapping[str, Any], records[i])) for i in clean]
    raw = {"event_timestamp": pa.array([str(r["event_timestamp"]) for r in kept], pa.string())}  # shown if unparsable
    rows = np.asarray(clean, dtype=np.int64) + 1
    result = validate_events(events_from_records(kept), now=now, source_rows=rows, raw=raw)
    rejects = pa.concat_tables([pa.Table.from_pylist(shape_rejects, schema=REJECTS_SCHEMA), result.rejects])
    rejects = rejects.sort_by([("row", "ascending")])
    return ValidationResult(valid=result.valid, rejects=rejects, rows_in=len(records))


def read_session_state(store: FeatureStore, session_ids: list[str]) -> pa.Table:
    """The stored state of these sessions; sessions never seen are absent.

    Feast returns feature timestamps in whole seconds, so a continued session's start is known to within a second.
    """
    names = (USER, *SESSION_ACTIVITY_FEATURES)
    response = store.get_online_features(
        features=[f"{SESSION_ACTIVITY}:{name}" for name in names],
        entity_rows=[{SESSION: s} for s in session_ids],
    )
    data = response.to_dict(include_event_timestamps=True)
    present = [i for i, n in enumerate(data["session_events"]) if n is not None]
    columns: dict[str, list[Any]] = {name: [data[name][i] for i in present] for name in (SESSION, *names)}
    columns["event_timestamp"] = [datetime.fromtimestamp(data["session_events__ts"][i], UTC) for i in present]
    columns["created"] = [datetime.now(UTC)] * len(present)
    return pa.table({f.name: pa.array(columns[f.name], f.type) for f in SESSION_ROW_SCHEMA}, schema=SESSION_ROW_SCHEMA)


def push_events(
    store: FeatureStore, tables: OfflineTables, events: pa.Table, prior: pa.Table | None = None
) -> tuple[int, float, float | None]:
    """Push validated canonical events; returns (sessions, seconds to visible, lag of the newest event)."""
    if events.num_rows == 0:
        return 0, 0.0, None
    began = time.perf_counter()  # visibility is measured from the moment the events are handed over
    if prior is None:
        sessions = pc.unique(events[SESSION]).to_pylist()
        prior = read_session_state(store, sessions)
    rows = session_rows(events, prior=prior)
    latest = latest_per_session(rows)
    write_online(store, SESSION_ACTIVITY, latest)
    seconds = time.perf_counter() - began
    tables.write(SESSION_ACTIVITY, rows, "append")
    newest = pc.max(events["event_timestamp"]).as_py()
    lag = (datetime.now(UTC) - newest).total_seconds() if newest else None
    log.info(
        "pushed session events",
        extra={
            "events": events.num_rows,
            "sessions": latest.num_rows,
            "push_seconds": round(seconds, 4),
            "lag_seconds": lag,
        },
    )
    return latest.num_rows, seconds, lag


def push_records(
    store: FeatureStore, tables: OfflineTables, records: Sequence[Mapping[str, Any]], now: datetime | None = None
) -> PushResult:
    """Validate JSON-like events, push the good ones, report the bad ones (never a silent drop)."""
    result = validate_records(records, now=now)
    events = canonicalize(result.valid) if result.valid.num_rows else EVENT_SCHEMA.empty_table()
    sessions, seconds, lag = push_events(store, tables, events)
    rejects = result.rejects.to_pylist()
    return PushResult(
        accepted=events.num_rows,
        rejected=result.rows_rejected,
        rejects=rejects,
        sessions=sessions,
        push_seconds=seconds,
        lag_seconds=lag,
    )
