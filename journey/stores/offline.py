"""Offline store tables of the active profile: where batch features land and Feast's offline sources read.

    local  <data_dir>/offline/<view>.parquet          one Parquet file per view
    prod   "<offline_schema>"."<view>" in PostgreSQL   one table per view, indexed on (entity key, event_timestamp)

Both backends swap a replaced table atomically, so a reader (Feast materialisation, a training-set query) never sees
an empty or half-written table and a failed write leaves the old one as it was:

- local: the new file is written to a temp file in the same folder and moved over the old one with `os.replace`.
  Append reads the file, concatenates and replaces it the same way; that is fine for the small daily increments
  the push path adds, not for bulk loads (use replace). Writers of one view are serialised by a lock file.
- prod: rows are bulk-loaded with `COPY ... FROM STDIN` into a staging table, never row by row: tables of
  fixed-width, null-free columns (the batch views) in PostgreSQL's binary format laid out by NumPy, others as CSV
  rendered by Arrow. Load, index, drop of the old table and rename of the staging one are one transaction, so
  readers see the old table until the commit and a failed load leaves it untouched. Writers of one view are
  serialised by a transaction-level advisory lock.

`psycopg` is imported lazily, so the module (and the local profile) works without PostgreSQL's driver loaded.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

from journey.errors import InvalidInputError, NotFoundError, ServiceUnavailableError
from journey.settings import Profile, Settings

if TYPE_CHECKING:
    import psycopg

WriteMode = Literal["replace", "append"]

# Same shape as the settings' schema/project names: a valid unquoted SQL identifier, short enough that the staging
# and index names derived from it stay within PostgreSQL's 63-byte limit.
_VIEW_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_COPY_BATCH_ROWS = 65_536
_CONNECT_TIMEOUT_S = 5


def validate_view(view: str) -> str:
    """Return `view` if it can name a file and a SQL table as is, else raise `InvalidInputError`."""
    if not isinstance(view, str) or not _VIEW_NAME.match(view):
        raise InvalidInputError(
            f"invalid feature view name {view!r}: use lower-case letters, digits and '_' (max 40, letter first)",
            field="view",
            value=view,
        )
    return view


def default_index_columns(table: pa.Table) -> list[str]:
    """The join keys Feast queries by: the entity key (first column) and `event_timestamp` when present."""
    names = table.column_names
    if not names:
        return []
    return [names[0]] + (["event_timestamp"] if "event_timestamp" in names[1:] else [])


class _Backend(Protocol):
    def location(self, view: str) -> str: ...
    def exists(self, view: str) -> bool: ...
    def read(self, view: str) -> pa.Table: ...
    def write(self, view: str, table: pa.Table, mode: WriteMode, index_columns: Sequence[str]) -> str: ...
    def drop_all(self) -> None: ...


class OfflineTables:
    """The offline tables of one profile; every method takes a feature view name (`user_activity`, ...)."""

    def __init__(self, settings: Settings) -> None:
        self.profile = settings.profile
        self._backend: _Backend
        if settings.profile is Profile.PROD:
            self._backend = _PostgresTables(settings.postgres_dsn, settings.offline_schema)
        else:
            self._backend = _ParquetTables(settings.offline_dir)

    def location(self, view: str) -> str:
        """Where the view's table lives: a file path (local) or `schema.table` (prod)."""
        return self._backend.location(validate_view(view))

    def exists(self, view: str) -> bool:
        return self._backend.exists(validate_view(view))

    def read(self, view: str) -> pa.Table:
        """The whole table; raises `NotFoundError` naming the location when it was never written."""
        return self._backend.read(validate_view(view))

    def write(
        self,
        view: str,
        table: pa.Table,
        mode: WriteMode = "replace",
        *,
        index_columns: Sequence[str] | None = None,
    ) -> str:
        """Replace the view's table atomically, or append rows to it (creating it if absent); return its location.

        `index_columns` (prod only) defaults to the entity key (first column) plus `event_timestamp`; pass `()`
        for no index. Appended rows must have the same column names as the stored table.
        """
        validate_view(view)
        if mode not in ("replace", "append"):
            raise InvalidInputError(f"unknown write mode {mode!r}: use 'replace' or 'append'", field="mode", value=mode)
        columns = list(default_index_columns(table) if index_columns is None else index_columns)
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise InvalidInputError(f"index columns {missing} are not columns of the table", field="index_columns")
        return self._backend.write(view, table, mode, columns)

    def drop_all(self) -> None:
        """Remove every offline table of this profile (test clean-up; prod drops the tables of `offline_schema`)."""
        self._backend.drop_all()


# --------------------------------------------------------------------------------------------------- local (Parquet)


class _ParquetTables:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, view: str) -> Path:
        return self.root / f"{view}.parquet"

    def location(self, view: str) -> str:
        return str(self.path(view))

    def exists(self, view: str) -> bool:
        return self.path(view).is_file()

    def read(self, view: str) -> pa.Table:
        path = self.path(view)
        if not path.is_file():
            raise NotFoundError(f"offline table {view!r} not found at {path}")
        return pq.read_table(path)

    def write(self, view: str, table: pa.Table, mode: WriteMode, index_columns: Sequence[str]) -> str:
        path = self.path(view)
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock(view):
            if mode == "append" and path.is_file():
                table = _concat_like(pq.read_table(path), table, str(path))
            _atomic_write_parquet(table, path)
        return str(path)

    def drop_all(self) -> None:
        if not self.root.is_dir():
            return
        for path in self.root.iterdir():
            stem = path.name.removesuffix(".parquet")
            if path.is_file() and path.name.endswith(".parquet") and _VIEW_NAME.match(stem):
                path.unlink()

    @contextlib.contextmanager
    def _lock(self, view: str) -> Iterator[None]:
        """One writer per view at a time on this host (append is read-modify-write)."""
        with (self.root / f".{view}.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _atomic_write_parquet(table: pa.Table, path: Path) -> None:
    """Write beside the target, flush to disk, then rename over it: the target is either old or new, never half."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("wb") as handle:
            pq.write_table(table, handle, compression="zstd")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)  # os.replace: atomic on one filesystem
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _concat_like(old: pa.Table, new: pa.Table, where: str) -> pa.Table:
    """Append `new` to `old` in old's column order and types; different column names are an input error."""
    if set(old.column_names) != set(new.column_names):
        raise InvalidInputError(
            f"cannot append to {where}: columns {sorted(new.column_names)} differ from the stored "
            f"{sorted(old.column_names)}",
            field="table",
        )
    try:
        aligned = new.select(old.column_names).cast(old.schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInputError(f"cannot append to {where}: {exc}", field="table") from exc
    return pa.concat_tables([old, aligned])


# ------------------------------------------------------------------------------------------------- prod (PostgreSQL)


def _pg_type(field: pa.Field) -> str:
    """PostgreSQL column type for an Arrow field; the types the feature views and push sources use."""
    t = field.type
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = t.value_type
        if pa.types.is_int64(inner):
            return "BIGINT[]"
        if pa.types.is_string(inner) or pa.types.is_large_string(inner):
            return "TEXT[]"
    scalar = {
        pa.int64(): "BIGINT",
        pa.int32(): "INTEGER",
        pa.int16(): "SMALLINT",
        pa.float64(): "DOUBLE PRECISION",
        pa.float32(): "REAL",
        pa.bool_(): "BOOLEAN",
        pa.string(): "TEXT",
        pa.large_string(): "TEXT",
        pa.date32(): "DATE",
    }
    if t in scalar:
        return scalar[t]
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz is not None else "TIMESTAMP"
    raise InvalidInputError(
        f"column {field.name!r} has type {t}, which the offline store cannot hold", field=field.name, value=str(t)
    )


# PostgreSQL type (as format_type() spells it) -> Arrow type read back
_ARROW_TYPES: dict[str, pa.DataType] = {
    "bigint": pa.int64(),
    "integer": pa.int32(),
    "smallint": pa.int16(),
    "double precision": pa.float64(),
    "real": pa.float32(),
    "boolean": pa.bool_(),
    "text": pa.string(),
    "date": pa.date32(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "timestamp without time zone": pa.timestamp("us"),
    "bigint[]": pa.list_(pa.int64()),
    "text[]": pa.list_(pa.string()),
}


def _pg_array_literals(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Render a list<int64|string> column as PostgreSQL array literals (`{1,2}`, `{"a","b\\"c"}`), vectorised."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    arr = arr.cast(pa.list_(pa.string()))
    values = arr.values
    if not pa.types.is_int64(column.type.value_type):
        escaped = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
        values = pc.binary_join_element_wise('"', escaped, '"', "")
    values = pc.fill_null(values, "NULL")
    rebuilt = pa.ListArray.from_arrays(arr.offsets, values, mask=arr.is_null())
    return pc.binary_join_element_wise("{", pc.binary_join(rebuilt, ","), "}", "")


# PostgreSQL's binary COPY format: a signature, flags, an empty header extension; per row a field count, then per
# field its byte length and big-endian value; -1 as field count ends the data. Timestamps count microseconds and
# dates days since 2000-01-01.
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + np.zeros(2, dtype=">i4").tobytes()
_BINARY_TRAILER = np.array([-1], dtype=">i2").tobytes()
_PG_EPOCH_US = 946_684_800_000_000
_PG_EPOCH_DAYS = 10_957


def _binary_layout(table: pa.Table) -> list[str] | None:
    """Big-endian NumPy type codes of the columns when every column is fixed-width and null-free, else None."""
    codes = []
    for field, column in zip(table.schema, table.columns, strict=True):
        t = field.type
        if column.null_count:
            return None
        if pa.types.is_timestamp(t) or t == pa.int64():
            codes.append(">i8")
        elif t == pa.float64():
            codes.append(">f8")
        elif t in (pa.int32(), pa.date32()):
            codes.append(">i4")
        elif t == pa.float32():
            codes.append(">f4")
        elif t == pa.int16():
            codes.append(">i2")
        elif t == pa.bool_():
            codes.append("u1")
        else:
            return None
    return codes


def _binary_rows(batch: pa.RecordBatch, codes: list[str]) -> bytes:
    """One batch in PostgreSQL's binary COPY row format, laid out as a packed NumPy record array."""
    layout = [("fields", ">i2")]
    for j, code in enumerate(codes):
        layout += [(f"n{j}", ">i4"), (f"v{j}", code)]
    rows = np.empty(batch.num_rows, dtype=np.dtype(layout))
    rows["fields"] = len(codes)
    for j, (field, column) in enumerate(zip(batch.schema, batch.columns, strict=True)):
        if pa.types.is_timestamp(field.type):
            values = pc.cast(column, pa.timestamp("us", tz=field.type.tz), safe=False).cast(pa.int64()).to_numpy()
            values = values - _PG_EPOCH_US
        elif pa.types.is_date32(field.type):
            values = column.cast(pa.int32()).to_numpy() - _PG_EPOCH_DAYS
        else:
            values = column.to_numpy(zero_copy_only=False)
        rows[f"n{j}"] = np.dtype(codes[j]).itemsize
        rows[f"v{j}"] = values
    return rows.tobytes()


def _csv_ready(table: pa.Table) -> pa.Table:
    """Columns Arrow's CSV writer can render in a form PostgreSQL's COPY (FORMAT csv) parses back exactly."""
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            columns.append(_pg_array_literals(column))
        elif pa.types.is_timestamp(field.type) and field.type.unit != "us":
            columns.append(pc.cast(column, pa.timestamp("us", tz=field.type.tz), safe=False))
        else:
            columns.append(column)
    return pa.Table.from_arrays(columns, names=table.column_names)


def _parse_json_lists(column: pa.Array, value_type: pa.DataType) -> pa.Array:
    """Parse `array_to_json()` text (null for SQL NULL) into a list column with Arrow's JSON reader."""
    if len(column) == 0:
        return pa.array([], pa.list_(value_type))
    lines = pc.binary_join_element_wise('{"v":', pc.fill_null(column, "null"), "}", "")
    whole = pa.LargeListArray.from_arrays([0, len(lines)], lines.cast(pa.large_string()))
    ndjson = pc.binary_join(whole, pa.scalar("\n", pa.large_string()))[0]
    schema = pa.schema([("v", pa.list_(value_type))])
    parsed = pjson.read_json(
        pa.BufferReader(ndjson.as_buffer()), parse_options=pjson.ParseOptions(explicit_schema=schema)
    )
    return parsed["v"].combine_chunks()


class _PostgresTables:
    def __init__(self, dsn: str, schema: str) -> None:
        from sqlalchemy.engine import make_url

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
        import psycopg

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
        from psycopg import sql

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
        from psycopg import sql

        with self._connect() as conn:
            columns = self._columns(conn, view)
            if columns is None:
                raise NotFoundError(f"offline table {self.location(view)!r} not found in PostgreSQL")
            schema = pa.schema([(name, _ARROW_TYPES.get(kind, pa.string())) for name, kind in columns])
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
        if buffer.tell() == 0:
            return schema.empty_table()
        buffer.seek(0)
        raw = pcsv.read_csv(
            buffer,
            read_options=pcsv.ReadOptions(column_names=schema.names),
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                column_types=csv_types,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                true_values=["t"],
                false_values=["f"],
            ),
        )
        out = []
        for field in schema:
            col = raw[field.name].combine_chunks()
            if pa.types.is_list(field.type):
                out.append(_parse_json_lists(col, field.type.value_type))
            else:
                out.append(pc.cast(col, field.type))
        return pa.Table.from_arrays(out, schema=schema)

    def write(self, view: str, table: pa.Table, mode: WriteMode, index_columns: Sequence[str]) -> str:
        import psycopg
        from psycopg import sql

        column_defs = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(_pg_type(f))) for f in table.schema
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
        from psycopg import sql

        binary = _binary_layout(table)
        options: sql.Composable = sql.SQL("FORMAT binary" if binary is not None else "FORMAT csv")
        if fresh:
            options = sql.SQL("{}, FREEZE").format(options)
        query = sql.SQL("COPY {} ({}) FROM STDIN ({})").format(target, names, options)
        with conn.cursor() as cur, cur.copy(query) as copy:
            if binary is not None:
                copy.write(_BINARY_HEADER)
                for batch in table.to_batches(max_chunksize=_COPY_BATCH_ROWS):
                    copy.write(_binary_rows(batch, binary))
                copy.write(_BINARY_TRAILER)
                return
            csv_options = pcsv.WriteOptions(include_header=False)
            for batch in _csv_ready(table).to_batches(max_chunksize=_COPY_BATCH_ROWS):
                buffer = io.BytesIO()
                pcsv.write_csv(batch, buffer, csv_options)
                copy.write(buffer.getvalue())

    def drop_all(self) -> None:
        import psycopg
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
