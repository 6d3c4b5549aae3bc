"""What one logged prediction is: the record `PredictionLog.append` takes, its Arrow schema, the conversion of a
batch of records to rows, and the interface of the sinks those rows go to."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

import pyarrow as pa

log = logging.getLogger(__name__)

TABLE: Final = "prediction_log"

PREDICTION_SCHEMA: Final = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("endpoint", pa.string(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("session_id", pa.string()),
        pa.field("experiment", pa.string()),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("model_version", pa.int64(), nullable=False),
        pa.field("score", pa.float64()),
        pa.field("shadow", pa.bool_(), nullable=False),
        pa.field("feature_age_s", pa.float64()),
    ]
)
"""One row per model answer: a shadow score is its own row with `shadow` true and the request's `request_id`."""


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One served (or shadow) prediction. `time` is UTC (a naive value is read as UTC); `score` is the number the
    A/B report ranks by (the positive-class probability, or P(purchase) of a multi-class model)."""

    request_id: str
    time: datetime
    endpoint: str
    user_id: int
    variant: str
    model_version: int
    score: float | None
    session_id: str | None = None
    experiment: str | None = None
    shadow: bool = False
    feature_age_s: float | None = None


class PredictionSink(Protocol):
    """Where batches go. `write` raises `JourneyError` (typically `ServiceUnavailableError`) on failure."""

    @property
    def location(self) -> str: ...
    def write(self, table: pa.Table) -> None: ...
    def read(
        self, *, experiment: str | None, endpoint: str | None, since: datetime | None, until: datetime | None
    ) -> pa.Table: ...
    def close(self) -> None: ...


def records_to_table(records: Sequence[PredictionRecord]) -> pa.Table:
    """Records as an Arrow table of PREDICTION_SCHEMA. A record that does not convert (a wrong type, a missing
    required value) is logged and left out, so one bad record never costs its whole batch."""
    try:
        return _convert(records)
    except (pa.ArrowException, TypeError, ValueError):
        good: list[PredictionRecord] = []
        for record in records:
            try:
                _convert([record])
            except (pa.ArrowException, TypeError, ValueError) as exc:
                log.error("prediction record refused", extra={"request_id": str(record.request_id), "error": str(exc)})
            else:
                good.append(record)
        return _convert(good)


def _convert(records: Sequence[PredictionRecord]) -> pa.Table:
    table = pa.table(
        {name: [getattr(r, name) for r in records] for name in PREDICTION_SCHEMA.names}, schema=PREDICTION_SCHEMA
    )
    for field in PREDICTION_SCHEMA:
        if not field.nullable and table[field.name].null_count:
            raise ValueError(f"{field.name} is required")
    return table
