"""`/events`: validate a batch of canonical events, push the good ones, log them, report the bad ones.

Good events of a mixed batch are never held hostage by bad ones: they are pushed to the `session_activity` push
source (online at once, appended offline for training) and appended to the event log (the offline `event_log`
table: the raw history later training and outcome joins read). Bad ones come back with row, field, value and
reason. A batch where *every* event is bad, or whose shape is wrong (unknown or missing field), is a client error:
HTTP 422 naming the first bad field, and nothing is written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from journey.errors import InvalidInputError
from journey.events import EVENT_SCHEMA, canonicalize
from journey.stores.push import push_events, validate_records
from serving import metrics
from serving.schemas import EventsResponse, Reject

if TYPE_CHECKING:
    from feast import FeatureStore

    from journey.stores.offline import OfflineTables

log = logging.getLogger(__name__)

EVENT_LOG = "event_log"


def ingest(store: FeatureStore, tables: OfflineTables, records: Sequence[Mapping[str, Any]]) -> EventsResponse:
    result = validate_records(records)
    rejects = [
        Reject(
            row=r["row"], field=r["field"], value=None if r["value"] is None else str(r["value"]), reason=r["reason"]
        )
        for r in result.rejects.to_pylist()
    ]
    if result.valid.num_rows == 0:
        first = rejects[0] if rejects else None
        metrics.count_events(rejected=len(rejects))
        raise InvalidInputError(
            f"no valid event: row {first.row} {first.field}: {first.reason}" if first else "no events",
            field=f"events[{first.row - 1}].{first.field}" if first else "events",
            value=first.value if first else None,
        )
    events = canonicalize(result.valid).cast(EVENT_SCHEMA)
    with metrics.time_event_push():
        sessions, _, _ = push_events(store, tables, events)
    tables.write(EVENT_LOG, events, "append", index_columns=("user_id", "event_timestamp"))
    metrics.count_events(accepted=events.num_rows, rejected=len(rejects))
    if rejects:
        log.info("events rejected", extra={"accepted": events.num_rows, "rejected": len(rejects)})
    return EventsResponse(accepted=events.num_rows, rejected=len(rejects), sessions=sessions, rejects=rejects)
