"""Prod profile: `"<offline_schema>"."<view>"` in PostgreSQL, bulk-loaded with COPY into a staging table that
replaces the old one in the same transaction; writers of a view are serialised by an advisory lock.

`psycopg` (and SQLAlchemy's URL parser) are imported inside the methods that use them, so importing the offline store
for the local profile does not load PostgreSQL's driver.
"""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.csv as pcsv

from journey.errors import InvalidInputError, NotFoundError, ServiceUnavailableError
from journey.stores.offline.backend import WriteMode
from journey.stores.offline.pg_codec import (
    ARROW_TYPES,
    BINARY_HEADER,
    BINARY_TRAILER,
    binary_layout,
    binary_rows,
    csv_ready,
    pg_type,
    table_from_copy_csv,
)

if TYPE_CHECKING:
    import psycopg

_COPY_BATCH_ROWS = 65_536
_CONNECT_TIMEOUT_S = 5


class PostgresTables:
    """The tables of one schema; every public method runs in one transaction of its own connection."""

    def __init__(self, dsn: str, schema: str) -> None:
        from sqlalchemy.engine import make_url  # lazy: see the module docstring

        url = make_url(dsn)
        self.schema = schema
        self.host = url.host or "localhost"
        self.port = url.port or 5432
        params: dict[str, Any] = {
            key: value if isinstance(value, str) else value[-1] for key, value in url.query.items()
        }
        params.update(host=self.host, port=self.port, dbname=url.database or "postgres")
        if url.username:
            params["user"] = url.username
        if url.password is not None:
            params["password"] = str(url.password)
        params.setdefault("connect_timeout", _CONNECT_TIMEOUT_S)
        self._params = params

    def location(self, view: str) -> str:
        return f"{self.schema}.{view}"

    @contextlib.contextmanager
    def _connect(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """One connection in one transaction: committed when the block ends, rolled back when it raises.

        A server that cannot be reached, or that goes away mid-way, raises `ServiceUnavailableError` naming it.
        """
        import psycopg  # lazy: see the module docstring

        try:
            conn = psycopg.connect(**self._params)
        except psycopg.OperationalError as exc:
            raise ServiceUnavailableError(self._unavailable(exc)) from None
        try:
            with conn:
                conn.execute("SET TIME ZONE 'UTC'")
                yield conn
        except psycopg.OperationalError as exc:
            if not conn.broken:
                raise
            raise ServiceUnavailableError(self._unavailable(exc)) from None

    def _unavailable(self, exc: Exception) -> str:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[0] if lines else type(exc).__name__
        return (
            f"cannot reach PostgreSQL at {self.host}:{self.port}: {reason} "
            "(check JOURNEY_POSTGRES_DSN and that the server runs)"
        )

    def _ident(self, name: str) -> Any:
        from psycopg import sql  # lazy: see the module docstring

        return sql.Identifier(self.schema, name)

    def _columns(self, conn: psycopg.Connection[tuple[Any, ...]], view: str) -> list[tuple[str, str]] | None:
        rows = conn.execute(
            """
            SELECT a.attname, format_type(a.atttypid, a.atttypmod)
            FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum
            """,
            (self.schema, view),
        ).fetchall()
        return [(str(name), str(kind)) for name, kind in rows] or None

    def exists(self, view: str) -> bool:
        with self._connect() as conn:
            return self._columns(conn, view) is not None

    def read(self, view: str) -> pa.Table:
        from psycopg import sql  # lazy: see the module docstring

        with self._connect() as conn:
            columns = self._columns(conn, view)
            if columns is None:
                raise NotFoundError(f"offline table {self.location(view)!r} not found in PostgreSQL")
            schema = pa.schema([(name, ARROW_TYPES.get(kind, pa.string())) for name, kind in columns])
            selects: list[sql.Composable] = []
            csv_types: dict[str, pa.DataType] = {}
            for field in schema:
                col = sql.Identifier(field.name)
                if pa.types.is_timestamp(field.type):
                    # epoch microseconds: exact (numeric), and independent of DateStyle/TimeZone
                    selects.append(sql.SQL("(extract(epoch FROM {}) * 1000000)::bigint").format(col))
                    csv_types[field.name] = pa.int64()
                elif pa.types.is_date32(field.type):
                    selects.append(sql.SQL("({} - DATE '1970-01-01')").format(col))
                    csv_types[field.name] = pa.int32()
                elif pa.types.is_list(field.type):
                    selects.append(sql.SQL("array_to_json({})::text").format(col))
                    csv_types[field.name] = pa.string()
                elif field.type == pa.string() and dict(columns)[field.name] != "text":
                    selects.append(sql.SQL("{}::text").format(col))
                    csv_types[field.name] = pa.string()
                else:
                    selects.append(col)
                    csv_types[field.name] = field.type
            query = sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT (FORMAT csv)").format(
                sql.SQL(", ").join(selects), self._ident(view)
            )
            buffer = io.BytesIO()
            with conn.cursor() as cur, cur.copy(query) as copy:
                for chunk in copy:
                    buffer.write(chunk)
        return table_from_copy_csv(buffer, schema, csv_types)

    def write(self, view: str, table: pa.Table, mode: WriteMode, index_columns: Sequence[str]) -> str:
        import psycopg  # lazy: see the module docstring
        from psycopg import sql

        column_defs = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(pg_type(f))) for f in table.schema
        )
        names = sql.SQL(", ").join(sql.Identifier(n) for n in table.column_names)
        with self._connect() as conn:
            try:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
                conn.commit()
            except psycopg.errors.UniqueViolation:  # another writer created it a moment ago
                conn.rollback()
            # serialise writers of this view; released at commit/rollback
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"journey.stores.offline:{self.location(view)}",)
            )
            stored = self._columns(conn, view)
            if mode == "append" and stored is not None:
                if {n for n, _ in stored} != set(table.column_names):
                    raise InvalidInputError(
                        f"cannot append to {self.location(view)}: columns {sorted(table.column_names)} differ from "
                        f"the stored {sorted(n for n, _ in stored)}",
                        field="table",
                    )
                self._copy(conn, self._ident(view), names, table, fresh=False)
                return self.location(view)
            stage = f"{view}__stage_{uuid.uuid4().hex[:8]}"
            conn.execute(sql.SQL("CREATE TABLE {} ({})").format(self._ident(stage), column_defs))
            self._copy(conn, self._ident(stage), names, table, fresh=True)
            if index_columns:
                conn.execute(
                    sql.SQL("CREATE INDEX {} ON {} ({})").format(
                        sql.Identifier(f"{stage}_idx"),
                        self._ident(stage),
                        sql.SQL(", ").join(sql.Identifier(c) for c in index_columns),
                    )
                )
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._ident(view)))
            conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(self._ident(stage), sql.Identifier(view)))
            if index_columns:
                conn.execute(
                    sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                        self._ident(f"{stage}_idx"), sql.Identifier(f"{view}__key_ts_idx")
                    )
                )
            conn.execute(sql.SQL("ANALYZE {}").format(self._ident(view)))
        return self.location(view)

    @staticmethod
    def _copy(
        conn: psycopg.Connection[tuple[Any, ...]], target: Any, names: Any, table: pa.Table, *, fresh: bool
    ) -> None:
        """Bulk load with COPY FROM STDIN, rendered by Arrow/NumPy a batch at a time (no Python loop over rows).

        Tables of fixed-width columns without nulls (the batch feature views) go as PostgreSQL's binary format,
        which neither side has to print or parse; anything else (strings, lists, nulls) as CSV. `fresh`: the target
        was created in this transaction, so rows can be loaded frozen (no later vacuum pass to set hint bits).
        """
        from psycopg import sql  # lazy: see the module docstring

        binary = binary_layout(table)
        options: sql.Composable = sql.SQL("FORMAT binary" if binary is not None else "FORMAT csv")
        if fresh:
            options = sql.SQL("{}, FREEZE").format(options)
        query = sql.SQL("COPY {} ({}) FROM STDIN ({})").format(target, names, options)
        with conn.cursor() as cur, cur.copy(query) as copy:
            if binary is not None:
                copy.write(BINARY_HEADER)
                for batch in table.to_batches(max_chunksize=_COPY_BATCH_ROWS):
                    copy.write(binary_rows(batch, binary))
                copy.write(BINARY_TRAILER)
                return
            csv_options = pcsv.WriteOptions(include_header=False)
            for batch in csv_ready(table).to_batches(max_chunksize=_COPY_BATCH_ROWS):
                buffer = io.BytesIO()
                pcsv.write_csv(batch, buffer, csv_options)
                copy.write(buffer.getvalue())

    def drop_all(self) -> None:
        import psycopg  # lazy: see the module docstring
        from psycopg import sql

        with self._connect() as conn:
            tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (self.schema,)).fetchall()
            for (name,) in tables:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._ident(str(name))))
            if self.schema != "public":
                conn.commit()
                try:  # RESTRICT: only when nothing but our tables lived there
                    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {}").format(sql.Identifier(self.schema)))
                except psycopg.errors.DependentObjectsStillExist:
                    conn.rollback()
