"""The prediction log: every served prediction, written in batches off the request path, and joined to outcomes.

    local  <data_dir>/prediction_log/date=YYYY-MM-DD/part-<time>-<id>.parquet   one file per flush and UTC day
    prod   "<offline_schema>".prediction_log in PostgreSQL                     bulk inserts, created if missing

The PostgreSQL table lives in the *offline* schema, beside `event_log`, not in the registry schema: it is
high-volume, append-only analysis data that is read together with the events, while the registry schema holds small
control-plane tables whose every change is an Alembic migration. (`OfflineTables.drop_all` removes it with the
other offline tables.)

Writing: `PredictionLog.append(record)` takes the lock for a list append and returns; a daemon thread writes what
has gathered every `flush_interval_s`, or as soon as `batch_size` records wait, and on `flush()`/`close()`. The
caller never waits for I/O: past `max_queue` waiting records, `append` drops the record, counts it and returns
False, so a slow or dead store costs predictions in the log, never latency. A failed write is logged and its
records counted as `failed` (not retried: the thread must keep up with the next batches). Records still in memory
when a process dies are lost; `close()` on shutdown writes them.

Outcomes (`label_predictions`, `attribute_purchases`): a purchase is the outcome of the same user's predictions
made at most `attribution_window_s` (settings) before it. Labels are per prediction (for AUC: did this user buy
within the window after this score?), attribution is per purchase (last touch: the newest non-shadow prediction
before it gets the credit).

    schema.py    <- PredictionRecord, PREDICTION_SCHEMA, records -> Arrow rows, the PredictionSink interface
    writer.py    <- PredictionLog: the batching, never-blocking appender and its writer thread
    parquet.py   <- ParquetSink (local)
    postgres.py  <- PostgresSink and its SQLAlchemy table (prod)
    outcomes.py  <- label_predictions, attribute_purchases

This module picks the sink of the active profile and is the package's API: callers import from here.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from journey.settings import Profile, Settings
from journey.stores.prediction_log.outcomes import (
    ATTRIBUTION_SCHEMA,
    LABEL_FIELDS,
    attribute_purchases,
    label_predictions,
)
from journey.stores.prediction_log.parquet import ParquetSink
from journey.stores.prediction_log.postgres import PostgresSink, prediction_table
from journey.stores.prediction_log.schema import (
    PREDICTION_SCHEMA,
    TABLE,
    PredictionRecord,
    PredictionSink,
    records_to_table,
)
from journey.stores.prediction_log.writer import LogStats, PredictionLog

__all__ = [
    "ATTRIBUTION_SCHEMA",
    "LABEL_FIELDS",
    "PREDICTION_SCHEMA",
    "TABLE",
    "LogStats",
    "ParquetSink",
    "PostgresSink",
    "PredictionLog",
    "PredictionRecord",
    "PredictionSink",
    "attribute_purchases",
    "label_predictions",
    "open_prediction_log",
    "prediction_sink",
    "prediction_table",
    "read_predictions",
    "records_to_table",
]


def prediction_sink(settings: Settings) -> PredictionSink:
    """The sink of the active profile: Parquet files (local) or the PostgreSQL table (prod)."""
    if settings.profile is Profile.PROD:
        return PostgresSink(settings.postgres_dsn, settings.offline_schema)
    return ParquetSink(settings.prediction_log_dir)


def open_prediction_log(settings: Settings, *, batch_size: int = 1000) -> PredictionLog:
    """The prediction log of the active profile, with the flush interval and queue bound from settings."""
    return PredictionLog(
        prediction_sink(settings),
        batch_size=batch_size,
        flush_interval_s=settings.prediction_log_flush_s,
        max_queue=settings.prediction_log_max_queue,
    )


def read_predictions(
    settings: Settings,
    *,
    experiment: str | None = None,
    endpoint: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pa.Table:
    """Logged predictions (PREDICTION_SCHEMA) of the active profile, optionally of one experiment / endpoint and
    within [since, until)."""
    sink = prediction_sink(settings)
    try:
        return sink.read(experiment=experiment, endpoint=endpoint, since=since, until=until)
    finally:
        sink.close()
