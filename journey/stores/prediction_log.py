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
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol, Self

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.parquet as pq

from journey.errors import InvalidInputError, JourneyError, ServiceUnavailableError
from journey.settings import Profile, Settings

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy import Engine, Table

log = logging.getLogger(__name__)

TABLE: Final = "prediction_log"
PURCHASE: Final = "purchase"  # journey.events.EventType.PURCHASE
_DROP_WARNING_EVERY_S = 60.0

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

LABEL_FIELDS: Final = (
    pa.field("converted", pa.bool_(), nullable=False),
    pa.field("purchase_time", pa.timestamp("us", tz="UTC")),
)
ATTRIBUTION_SCHEMA: Final = pa.schema(
    [
        pa.field("event_id", pa.string()),
        pa.field("user_id", pa.int64()),
        pa.field("purchase_time", pa.timestamp("us", tz="UTC")),
        pa.field("request_id", pa.string()),
        pa.field("prediction_time", pa.timestamp("us", tz="UTC")),
        pa.field("endpoint", pa.string()),
        pa.field("experiment", pa.string()),
        pa.field("variant", pa.string()),
        pa.field("model_version", pa.int64()),
    ]
)


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


_COLUMNS: Final = tuple(f.name for f in fields(PredictionRecord))  # a test keeps them equal to the schema's


@dataclass(frozen=True)
class LogStats:
    """Counters since the log was opened: appended = written + failed + pending (+ in flight)."""

    appended: int
    written: int
    dropped: int
    failed: int
    pending: int


class PredictionSink(Protocol):
    """Where batches go. `write` raises `JourneyError` (typically `ServiceUnavailableError`) on failure."""

    @property
    def location(self) -> str: ...
    def write(self, table: pa.Table) -> None: ...
    def read(
        self, *, experiment: str | None, endpoint: str | None, since: datetime | None, until: datetime | None
    ) -> pa.Table: ...
    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------------- the appender


class PredictionLog:
    """A batched, thread-safe prediction log whose `append` never blocks on I/O (see the module docstring).

    >>> log = open_prediction_log(settings)  # doctest: +SKIP
    >>> log.append(PredictionRecord("r1", now, "predict_purchase", 12, "control", 3, 0.42))  # doctest: +SKIP
    True
    >>> log.close()  # doctest: +SKIP

    Create it in the process that appends (after a fork: the writer thread does not survive one).
    """

    def __init__(
        self,
        sink: PredictionSink,
        *,
        batch_size: int = 1000,
        flush_interval_s: float = 2.0,
        max_queue: int = 100_000,
    ) -> None:
        if batch_size < 1 or max_queue < 1 or flush_interval_s <= 0:
            raise InvalidInputError(
                "batch_size and max_queue must be >= 1 and flush_interval_s > 0",
                field="prediction_log",
                value=(batch_size, max_queue, flush_interval_s),
            )
        self.sink = sink
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_queue = max_queue
        self._cond = threading.Condition()
        self._buffer: list[PredictionRecord] = []
        self._closed = False
        self._flush_requested = 0  # serial of the newest flush() call
        self._flushed = 0  # the newest flush serial whose records are written
        self._appended = self._written = self._dropped = self._failed = self._in_flight = 0
        self._last_drop_warning = 0.0
        self._thread = threading.Thread(target=self._run, name="journey-prediction-log", daemon=True)
        self._thread.start()

    @property
    def location(self) -> str:
        return self.sink.location

    def append(self, record: PredictionRecord) -> bool:
        """Queue one record; False (and counted in `stats.dropped`) when the queue is full or the log closed."""
        with self._cond:
            if self._closed or len(self._buffer) >= self.max_queue:
                self._dropped += 1
                warn = time.monotonic() - self._last_drop_warning > _DROP_WARNING_EVERY_S
                if warn:
                    self._last_drop_warning = time.monotonic()
            else:
                self._buffer.append(record)
                self._appended += 1
                if len(self._buffer) == self.batch_size:
                    self._cond.notify_all()
                return True
        if warn:
            log.warning("prediction log dropped a record", extra={"dropped": self._dropped, "closed": self._closed})
        return False

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Write everything appended so far; True when done within `timeout_s` (for tests and shutdown)."""
        with self._cond:
            self._flush_requested += 1
            target = self._flush_requested
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._flushed >= target or not self._thread.is_alive(), timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, stop the writer thread and release the sink. Later appends are dropped."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("prediction log writer did not finish", extra={"pending": len(self._buffer)})
        self.sink.close()
        log.info("prediction log closed", extra={"location": self.location, **vars(self.stats)})

    @property
    def stats(self) -> LogStats:
        with self._cond:
            return LogStats(
                appended=self._appended,
                written=self._written,
                dropped=self._dropped,
                failed=self._failed,
                pending=len(self._buffer) + self._in_flight,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                deadline = time.monotonic() + self.flush_interval_s
                while (
                    not self._closed
                    and self._flushed >= self._flush_requested
                    and len(self._buffer) < self.batch_size
                    and (remaining := deadline - time.monotonic()) > 0
                ):
                    self._cond.wait(remaining)
                batch, self._buffer = self._buffer, []
                self._in_flight = len(batch)
                serial, closing = self._flush_requested, self._closed
            written = self._write(batch) if batch else 0
            with self._cond:
                self._written += written
                self._failed += len(batch) - written
                self._in_flight = 0
                self._flushed = serial
                self._cond.notify_all()
                if closing and not self._buffer:
                    return

    def _write(self, batch: list[PredictionRecord]) -> int:
        """Write one batch; the number of records written (bad records and failed writes are logged, not raised:
        this thread must survive anything, or every later prediction would be lost silently)."""
        try:
            table = records_to_table(batch)
            self.sink.write(table)
        except JourneyError as exc:
            log.error(
                "prediction log write failed", extra={"records": len(batch), "error": str(exc), "to": self.location}
            )
            return 0
        except Exception:  # a bug or an unexpected driver error: logged with its traceback, the thread lives on
            log.exception("prediction log write failed", extra={"records": len(batch), "to": self.location})
            return 0
        return int(table.num_rows)


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


# ----------------------------------------------------------------------------------------------------------- sinks


class ParquetSink:
    """Local profile: one Parquet file per flush and UTC day, written to a hidden temp name and renamed into place,
    so a reader (the A/B report) never sees a half-written file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return str(self.root)

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        days = pc.strftime(table["time"], format="%Y-%m-%d")
        stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"
        try:
            for day in pc.unique(days).to_pylist():
                part = table.filter(pc.equal(days, day))
                folder = self.root / f"date={day}"
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / f".part-{stamp}.parquet.tmp"
                pq.write_table(part, tmp)
                tmp.replace(folder / f"part-{stamp}.parquet")
        except OSError as exc:
            raise JourneyError(f"cannot write the prediction log under {self.root}: {exc}") from exc

    def read(
        self, *, experiment: str | None, endpoint: str | None, since: datetime | None, until: datetime | None
    ) -> pa.Table:
        if not self.root.is_dir():
            return PREDICTION_SCHEMA.empty_table()
        partitioning = pds.partitioning(pa.schema([("date", pa.string())]), flavor="hive")
        dataset = pds.dataset(self.root, format="parquet", partitioning=partitioning, schema=_with_date_partition())
        condition = _arrow_filter(experiment, endpoint, since, until)
        table = dataset.to_table(columns=list(PREDICTION_SCHEMA.names), filter=condition)
        return table.cast(PREDICTION_SCHEMA)

    def close(self) -> None:
        return None


class PostgresSink:
    """Prod profile: `"<schema>".prediction_log`, created (with the schema) on first use, rows bulk-inserted with
    SQLAlchemy Core (one executemany per batch, batched by psycopg's pipeline)."""

    def __init__(self, dsn: str, schema: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        self.schema = schema
        self._url = make_url(dsn)
        self._engine: Engine = create_engine(self._url, pool_pre_ping=True, connect_args={"connect_timeout": 5})
        self._table: Table = prediction_table(schema)
        self._created = False

    @property
    def location(self) -> str:
        where = self._url.render_as_string(hide_password=True)
        return f"{where} ({self.schema}.{TABLE})"

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        with self._begin() as connection:
            connection.execute(self._table.insert(), table.to_pylist())

    def read(
        self, *, experiment: str | None, endpoint: str | None, since: datetime | None, until: datetime | None
    ) -> pa.Table:
        from sqlalchemy import select

        query = select(self._table).order_by(self._table.c.time)
        if experiment is not None:
            query = query.where(self._table.c.experiment == experiment)
        if endpoint is not None:
            query = query.where(self._table.c.endpoint == endpoint)
        if since is not None:
            query = query.where(self._table.c.time >= since)
        if until is not None:
            query = query.where(self._table.c.time < until)
        with self._begin() as connection:
            rows = [dict(row._mapping) for row in connection.execute(query)]
        return pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA)

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _begin(self) -> Iterator[Any]:
        from sqlalchemy.exc import OperationalError

        try:
            with self._engine.begin() as connection:
                if not self._created:
                    self._create(connection)
                yield connection
        except OperationalError as exc:
            reason = next((line.strip() for line in str(exc.orig).splitlines() if line.strip()), "unreachable")
            raise ServiceUnavailableError(f"prediction log at {self.location} unavailable: {reason}") from None
        self._created = True

    def _create(self, connection: Any) -> None:
        """Schema and table if missing; concurrent first writers (workers starting together) queue on a lock."""
        from sqlalchemy import text

        key = zlib.crc32(f"journey-prediction-log:{self.schema}".encode())
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        quoted = connection.dialect.identifier_preparer.quote_schema(self.schema)
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
        self._table.metadata.create_all(connection, checkfirst=True)


def prediction_table(schema: str | None) -> Table:
    """The prod table: PREDICTION_SCHEMA's columns, indexed for the report's reads (by experiment and time) and
    the outcome join (by user and time)."""
    from sqlalchemy import BigInteger, Boolean, Column, DateTime, Float, Index, MetaData, String, Table, Text

    metadata = MetaData(schema=schema)
    return Table(
        TABLE,
        metadata,
        Column("request_id", String(64), nullable=False),
        Column("time", DateTime(timezone=True), nullable=False),
        Column("endpoint", String(64), nullable=False),
        Column("user_id", BigInteger, nullable=False),
        Column("session_id", Text),
        Column("experiment", String(63)),
        Column("variant", String(32), nullable=False),
        Column("model_version", BigInteger, nullable=False),
        Column("score", Float),
        Column("shadow", Boolean, nullable=False),
        Column("feature_age_s", Float),
        Index(f"ix_{TABLE}_experiment_time", "experiment", "time"),
        Index(f"ix_{TABLE}_user_id_time", "user_id", "time"),
    )


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


def _with_date_partition() -> pa.Schema:
    return PREDICTION_SCHEMA.append(pa.field("date", pa.string()))


def _arrow_filter(
    experiment: str | None, endpoint: str | None, since: datetime | None, until: datetime | None
) -> pc.Expression | None:
    """Row filter, plus day-partition pruning for the time bounds."""
    parts: list[pc.Expression] = []
    if experiment is not None:
        parts.append(pc.field("experiment") == experiment)
    if endpoint is not None:
        parts.append(pc.field("endpoint") == endpoint)
    if since is not None:
        start = _utc(since)
        parts += [
            pc.field("date") >= f"{start:%Y-%m-%d}",
            pc.field("time") >= pa.scalar(start, PREDICTION_SCHEMA.field("time").type),
        ]
    if until is not None:
        end = _utc(until)
        parts += [
            pc.field("date") <= f"{end:%Y-%m-%d}",
            pc.field("time") < pa.scalar(end, PREDICTION_SCHEMA.field("time").type),
        ]
    if not parts:
        return None
    condition = parts[0]
    for part in parts[1:]:
        condition = condition & part
    return condition


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --------------------------------------------------------------------------------------------------------- outcomes


def label_predictions(predictions: pa.Table, events: pa.Table, window_s: float) -> pa.Table:
    """Each prediction (same order) plus `converted`: its user bought within `window_s` at or after it, and
    `purchase_time`: the first such purchase (null when none). Shadow rows are labelled too: that is how a shadow
    version's ranking is judged. `events` are canonical events (journey.events); only purchases count."""
    import pandas as pd

    _check_window(window_s)
    frame = _prediction_frame(predictions)
    frame["_row"] = range(len(frame))
    purchases = _purchase_frame(events)
    if frame.empty or purchases.empty:
        frame["purchase_time"] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us, UTC]")
    else:
        frame = pd.merge_asof(
            frame.sort_values("time", kind="stable"),
            purchases[["user_id", "purchase_time"]].sort_values("purchase_time", kind="stable"),
            left_on="time",
            right_on="purchase_time",
            by="user_id",
            direction="forward",
            tolerance=pd.Timedelta(seconds=window_s),
        ).sort_values("_row", kind="stable")
    converted = pa.array(frame["purchase_time"].notna().to_numpy(), pa.bool_())
    purchase_time = pa.array(frame["purchase_time"], pa.timestamp("us", tz="UTC"))
    return predictions.append_column(LABEL_FIELDS[0], converted).append_column(LABEL_FIELDS[1], purchase_time)


def attribute_purchases(predictions: pa.Table, events: pa.Table, window_s: float) -> pa.Table:
    """Each purchase with the newest non-shadow prediction of its user at most `window_s` before it (last touch);
    purchases with none are left out. ATTRIBUTION_SCHEMA, in purchase time order."""
    import pandas as pd

    _check_window(window_s)
    frame = _prediction_frame(predictions)
    frame = frame[~frame["shadow"]].rename(columns={"time": "prediction_time"})
    purchases = _purchase_frame(events)
    if frame.empty or purchases.empty:
        return ATTRIBUTION_SCHEMA.empty_table()
    joined = pd.merge_asof(
        purchases.sort_values("purchase_time", kind="stable"),
        frame[
            ["user_id", "prediction_time", "request_id", "endpoint", "experiment", "variant", "model_version"]
        ].sort_values("prediction_time", kind="stable"),
        left_on="purchase_time",
        right_on="prediction_time",
        by="user_id",
        direction="backward",
        tolerance=pd.Timedelta(seconds=window_s),
    )
    joined = joined[joined["request_id"].notna()]
    joined["model_version"] = joined["model_version"].astype("int64")
    return pa.Table.from_pandas(joined[ATTRIBUTION_SCHEMA.names], schema=ATTRIBUTION_SCHEMA, preserve_index=False)


def _check_window(window_s: float) -> None:
    if not window_s > 0:
        raise InvalidInputError(
            f"the attribution window must be > 0 seconds, got {window_s!r}",
            field="attribution_window_s",
            value=window_s,
        )


def _prediction_frame(predictions: pa.Table) -> pd.DataFrame:
    missing = set(PREDICTION_SCHEMA.names) - set(predictions.column_names)
    if missing:
        raise InvalidInputError(
            f"predictions lack columns {sorted(missing)}", field="predictions", value=sorted(missing)
        )
    frame: pd.DataFrame = predictions.select(list(PREDICTION_SCHEMA.names)).cast(PREDICTION_SCHEMA).to_pandas()
    frame["time"] = frame["time"].astype("datetime64[us, UTC]")
    return frame


def _purchase_frame(events: pa.Table) -> pd.DataFrame:
    for column in ("event_id", "user_id", "event_type", "event_timestamp"):
        if column not in events.column_names:
            raise InvalidInputError(f"events lack column {column!r}", field="events", value=column)
    purchases = events.filter(pc.equal(events["event_type"], PURCHASE))
    frame: pd.DataFrame = purchases.select(["event_id", "user_id", "event_timestamp"]).to_pandas()
    frame = frame.rename(columns={"event_timestamp": "purchase_time"})
    frame["purchase_time"] = frame["purchase_time"].astype("datetime64[us, UTC]")
    frame["user_id"] = frame["user_id"].astype("int64")
    return frame
