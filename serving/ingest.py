"""`/events`: validate a batch of canonical events, store each new one exactly once, report the bad ones.

Good events of a mixed batch are never held hostage by bad ones: they are pushed to the `session_activity` push
source (online at once, appended offline for training) and appended to the event log (the offline `event_log`
table: the raw history later training and outcome joins read). One rule for every problem inside one event (not an
object, an unknown field, a required field missing or null, a value of the wrong type or out of range): a reject
of that event with row, field, value and reason, and the batch's other events are stored; a batch whose every
event is bad is answered 200 with `accepted: 0` and the rejects. Only a body that is not a JSON object with a
non-empty `events` list, or one over the size or count limit, is a 4xx for the whole request.

Exactly once (journey/stores/event_ids.py): an event whose `event_id` was stored before, by any request, worker or
replica within JOURNEY_EVENT_DEDUP_WINDOW_S, is acknowledged as a duplicate (`duplicates`, `duplicate_rows`) and
changes nothing online or offline: a client that retries a batch after a timeout gets the state of one delivery.
The ids are claimed before the write, confirmed after it, and released when it fails (the client's retry then
stores them); an id another request is storing at this moment is a per-row reject (`event_id_in_flight`): retry it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from journey.events import EVENT_SCHEMA, canonicalize
from journey.stores.event_ids import Claim, EventIdLedger
from journey.stores.push import push_events, validate_records
from serving import metrics
from serving.schemas import EventsResponse, Reject

if TYPE_CHECKING:
    from feast import FeatureStore

    from journey.stores.offline import OfflineTables

log = logging.getLogger(__name__)

EVENT_LOG = "event_log"
IN_FLIGHT_REASON = "event_id_in_flight"  # another request is storing this event id now: retry it


def ingest(
    store: FeatureStore,
    tables: OfflineTables,
    records: Sequence[object],
    ledger: EventIdLedger | None = None,
) -> EventsResponse:
    """Validate, store the new events once (no ledger: every valid event is stored), answer the counts."""
    result = validate_records(records)
    rejects = [
        Reject(
            row=r["row"], field=r["field"], value=None if r["value"] is None else str(r["value"]), reason=r["reason"]
        )
        for r in result.rejects.to_pylist()
    ]
    events = canonicalize(result.valid).cast(EVENT_SCHEMA) if result.valid.num_rows else EVENT_SCHEMA.empty_table()
    rows = _valid_rows(len(records), rejects)
    claims = ledger.claim([str(i) for i in events["event_id"].to_pylist()]) if ledger else [Claim.NEW] * len(rows)
    new = np.array([c == Claim.NEW for c in claims], dtype=bool)
    duplicate_rows = [row for row, c in zip(rows, claims, strict=True) if c == Claim.DUPLICATE]
    rejects += _in_flight(events, rows, claims)
    fresh = events.filter(pa.array(new))
    sessions = _store(store, tables, fresh, ledger)
    rejected = len({r.row for r in rejects})  # events; an event may have several problems, each one a reject
    metrics.count_events(accepted=fresh.num_rows, rejected=rejected, duplicates=len(duplicate_rows))
    if rejects or duplicate_rows:
        log.info(
            "events rejected or duplicate",
            extra={"accepted": fresh.num_rows, "rejected": rejected, "duplicates": len(duplicate_rows)},
        )
    return EventsResponse(
        accepted=fresh.num_rows,
        rejected=rejected,
        duplicates=len(duplicate_rows),
        sessions=sessions,
        rejects=sorted(rejects, key=lambda r: r.row),
        duplicate_rows=duplicate_rows,
    )


def _store(store: FeatureStore, tables: OfflineTables, events: pa.Table, ledger: EventIdLedger | None) -> int:
    """Push and log the new events; their ids confirmed when both writes are done, released when one failed."""
    ids = [str(i) for i in events["event_id"].to_pylist()]
    try:
        with metrics.time_event_push():
            sessions, _, _ = push_events(store, tables, events)
        if events.num_rows:
            tables.write(EVENT_LOG, events, "append", index_columns=("user_id", "event_timestamp"))
    except BaseException:
        if ledger is not None:
            ledger.release(ids)  # not stored: the client's retry must be able to store them
        raise
    if ledger is not None and ids:
        ledger.confirm(ids)
    return sessions


def _valid_rows(n: int, rejects: list[Reject]) -> list[int]:
    """1-based request rows of the valid events, in order (a row has one reject per problem found)."""
    bad = {r.row for r in rejects}
    return [row for row in range(1, n + 1) if row not in bad]


def _in_flight(events: pa.Table, rows: list[int], claims: list[Claim]) -> list[Reject]:
    ids = events["event_id"].to_pylist()
    return [
        Reject(row=row, field="event_id", value=str(ids[i]), reason=IN_FLIGHT_REASON)
        for i, (row, claim) in enumerate(zip(rows, claims, strict=True))
        if claim == Claim.IN_FLIGHT
    ]
