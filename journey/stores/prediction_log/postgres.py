"""Prod profile sink: `"<offline_schema>".prediction_log` in PostgreSQL, created on first use, bulk inserts.

SQLAlchemy is imported inside the functions that use it: the local profile (and a process that only appends)
does not load it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from journey.errors import ServiceUnavailableError
from journey.stores.prediction_log.schema import PREDICTION_SCHEMA, TABLE

if TYPE_CHECKING:
    from sqlalchemy import Engine, Table


class PostgresSink:
    """Prod profile: `"<schema>".prediction_log`, created (with the schema) on first use, rows bulk-inserted with
    SQLAlchemy Core (one executemany per batch, batched by psycopg's pipeline)."""

    def __init__(self, dsn: str, schema: str) -> None:
        from sqlalchemy import create_engine  # lazy: see the module docstring
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
        from sqlalchemy import select  # lazy: see the module docstring

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
        from sqlalchemy.exc import OperationalError  # lazy: see the module docstring

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
        from sqlalchemy import text  # lazy: see the module docstring

        key = zlib.crc32(f"journey-prediction-log:{self.schema}".encode())
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        quoted = connection.dialect.identifier_preparer.quote_schema(self.schema)
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
        self._table.metadata.create_all(connection, checkfirst=True)


def prediction_table(schema: str | None) -> Table:
    """The prod table: PREDICTION_SCHEMA's columns, indexed for the report's reads (by experiment and time) and
    the outcome join (by user and time)."""
    # lazy: see the module docstring
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
