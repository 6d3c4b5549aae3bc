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

`psycopg` is imported lazily, so the package (and the local profile) works without PostgreSQL's driver loaded.

    backend.py   <- the interface both backends implement; valid view names, write modes, default index columns
    parquet.py   <- local: Parquet files, atomic replace, lock file per view
    postgres.py  <- prod: connection, COPY in/out, staging table swap, advisory lock per view
    pg_codec.py  <- Arrow <-> PostgreSQL types and COPY formats (binary, CSV, array literals, JSON arrays)
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from journey.errors import InvalidInputError
from journey.settings import Profile, Settings
from journey.stores.offline.backend import Backend, WriteMode, default_index_columns, validate_view
from journey.stores.offline.parquet import ParquetTables
from journey.stores.offline.postgres import PostgresTables

__all__ = ["OfflineTables", "WriteMode", "default_index_columns", "validate_view"]


class OfflineTables:
    """The offline tables of one profile; every method takes a feature view name (`user_activity`, ...)."""

    def __init__(self, settings: Settings) -> None:
        self.profile = settings.profile
        self._backend: Backend
        if settings.profile is Profile.PROD:
            self._backend = PostgresTables(settings.postgres_dsn, settings.offline_schema)
        else:
            self._backend = ParquetTables(settings.offline_dir)

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
