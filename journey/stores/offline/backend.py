"""What every offline backend offers (`Backend`), and the view names and write modes they accept."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, Protocol

import pyarrow as pa

from journey.errors import InvalidInputError

WriteMode = Literal["replace", "append"]

# Same shape as the settings' schema/project names: a valid unquoted SQL identifier, short enough that the staging
# and index names derived from it stay within PostgreSQL's 63-byte limit.
VIEW_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def validate_view(view: str) -> str:
    """Return `view` if it can name a file and a SQL table as is, else raise `InvalidInputError`."""
    if not isinstance(view, str) or not VIEW_NAME.match(view):
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


class Backend(Protocol):
    """One profile's tables; `OfflineTables` validates names, modes and index columns before calling it."""

    def location(self, view: str) -> str: ...
    def exists(self, view: str) -> bool: ...
    def read(self, view: str) -> pa.Table: ...
    def write(self, view: str, table: pa.Table, mode: WriteMode, index_columns: Sequence[str]) -> str: ...
    def drop_all(self) -> None: ...
