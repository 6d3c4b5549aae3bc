"""What a mapping says beyond column names: layout, event types, composed timestamps, anonymous users, side files.

`SourceFormat` (formats.py) is a `FileMapping` with a name and side files. Every model refuses unknown keys, so a
typo in a YAML mapping is an error naming the key, never a silently ignored option. `inherit` is how a side file of
events takes the keys it does not set from the main mapping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from journey.events import EVENT_TYPES

TimeUnit = Literal["s", "ms", "us"]
CanonicalField = Literal[
    "event_id", "user_id", "session_id", "item_id", "event_type", "event_timestamp", "price", "category_id"
]
AnonymousUsers = Literal["reject", "session", "anonymous_id"]
_DELIMITERS_REFUSED = {'"', "\n", "\r"}


def _canonical_type(value: str | None) -> str | None:
    if value is not None and value not in EVENT_TYPES:
        raise ValueError(f"{value!r} is not a canonical event type; known: {list(EVENT_TYPES)}")
    return value


def _one_character(value: str) -> str:
    if len(value) != 1 or value in _DELIMITERS_REFUSED:
        raise ValueError(f'must be one character other than a quote or newline, got {value!r} (a tab: "\\t")')
    return value


class EventTypeRule(BaseModel):
    """An event type the file does not spell out: the same for every row, or for rows whose type cell is empty."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    constant: str | None = Field(None, description="Every row is this canonical type (a file without a type column).")
    default: str | None = Field(None, description="Canonical type of rows whose type cell is empty.")

    _canonical = field_validator("constant", "default")(_canonical_type)

    @model_validator(mode="after")
    def _exactly_one(self) -> EventTypeRule:
        if (self.constant is None) == (self.default is None):
            raise ValueError("set exactly one of constant and default")
        return self


class TimestampParts(BaseModel):
    """A timestamp made of a date column plus an offset from that date's midnight (in the mapping's timezone)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    date: str = Field(description="Column holding the date.")
    date_format: str = Field("%Y-%m-%d", description="strptime pattern of the date column.")
    offset: str | None = Field(None, description="Column holding the time since midnight; none: midnight.")
    offset_unit: TimeUnit = Field("ms", description="Unit of the offset; fractions are kept to the microsecond.")


class FileMapping(BaseModel):
    """How one file's columns and values become canonical events (the keys a YAML mapping may set)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: dict[CanonicalField, str] = Field(default_factory=dict, description="Canonical field -> source column.")
    event_types: dict[str, str] = Field(default_factory=dict, description="Source event value -> canonical type.")
    event_type: EventTypeRule | None = Field(None, description="A constant type, or the type of empty cells.")
    timestamp_unit: TimeUnit | None = Field(None, description="Epoch timestamps in this unit (fractions allowed).")
    timestamp_format: str | None = Field(
        None, description="strptime pattern, or `iso` for ISO 8601 with or without offset."
    )
    timestamp: TimestampParts | None = Field(None, description="A timestamp composed of a date and an offset column.")
    timezone: str = Field("UTC", description="Zone of naive timestamps and of dates.")
    delimiter: str = Field(",", description="Field separator of CSV files, one character.")
    header: bool = Field(True, description="False when the CSV has no header row.")
    column_names: list[str] | None = Field(None, description="Source column names for header-less files.")
    anonymous_users: AnonymousUsers = Field(
        "reject",
        description="Rows without a user id: reject (missing_id), session (the session is the user), "
        "anonymous_id (a stable id per session, negative so it never meets a known user's).",
    )

    _delimiter = field_validator("delimiter")(_one_character)

    @model_validator(mode="after")
    def _consistent(self) -> FileMapping:
        for problem in (
            self._columns_problem(),
            self._users_problem(),
            self._event_type_problem(),
            self._timestamp_problem(),
            self._layout_problem(),
        ):
            if problem:
                raise ValueError(problem)
        return self

    def _columns_problem(self) -> str | None:
        return None if "item_id" in self.columns else "columns must map item_id"

    def _users_problem(self) -> str | None:
        mapped = "user_id" in self.columns
        if self.anonymous_users == "reject":
            return None if mapped else "columns must map user_id (or set anonymous_users: session | anonymous_id)"
        if "session_id" not in self.columns:
            return f"anonymous_users: {self.anonymous_users} needs columns.session_id (anonymous users are sessions)"
        if self.anonymous_users == "session" and mapped:
            return (
                "anonymous_users: session makes every session its own user (user_id = session id), which would mix "
                "with the ids of columns.user_id: use anonymous_users: anonymous_id, or do not map user_id"
            )
        return None

    def _event_type_problem(self) -> str | None:
        unknown = sorted(set(self.event_types.values()) - set(EVENT_TYPES))
        if unknown:
            return f"event_types maps onto unknown canonical types {unknown}; known: {list(EVENT_TYPES)}"
        constant = self.event_type is not None and self.event_type.constant is not None
        mapped = "event_type" in self.columns
        if constant and (mapped or self.event_types):
            return "event_type.constant excludes columns.event_type and event_types (the file has no type column)"
        if not constant and not mapped:
            return "columns must map event_type (or set event_type: {constant: view})"
        return None

    def _timestamp_problem(self) -> str | None:
        ways = [w for w in (self.timestamp_unit, self.timestamp_format, self.timestamp) if w is not None]
        if len(ways) != 1:
            return "set exactly one of timestamp_unit, timestamp_format and timestamp (date + offset columns)"
        mapped = "event_timestamp" in self.columns
        if self.timestamp is not None and mapped:
            return "timestamp (date + offset) excludes columns.event_timestamp"
        if self.timestamp is None and not mapped:
            return "columns must map event_timestamp (or set timestamp: {date: ..., offset: ...})"
        return None

    def _layout_problem(self) -> str | None:
        if self.header:
            return None
        if not self.column_names:
            return "column_names is required when header is false"
        unknown = sorted(set(self.source_columns()) - set(self.column_names))
        return f"columns {unknown} are not among column_names {self.column_names}" if unknown else None

    @property
    def has_sessions(self) -> bool:
        return "session_id" in self.columns

    @property
    def has_event_ids(self) -> bool:
        return "event_id" in self.columns

    def source_columns(self) -> dict[str, str]:
        """Every source column the mapping reads -> what it is read for (named for messages)."""
        read: dict[str, str] = {column: canonical for canonical, column in self.columns.items()}
        if self.timestamp is not None:
            read[self.timestamp.date] = "timestamp.date"
            if self.timestamp.offset is not None:
                read[self.timestamp.offset] = "timestamp.offset"
        return read


class EventsFile(FileMapping):
    """More events from another file (purchases beside clicks); keys it does not set come from the main mapping."""

    kind: Literal["events"]
    path: Path = Field(description="The file; a relative path is taken from the source file's folder.")


class LookupFile(BaseModel):
    """Values joined onto the events by key (an item's category from a product file); events keep their own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["lookup"]
    path: Path = Field(description="The file; a relative path is taken from the source file's folder.")
    join: dict[Literal["item_id"], str] = Field(description="Canonical field of the events -> key column here.")
    columns: dict[Literal["category_id", "price"], str] = Field(description="Canonical field -> column here.")
    delimiter: str = Field(",", description="Field separator (default: the main mapping's).")
    header: bool = Field(True, description="False when the file has no header row.")
    column_names: list[str] | None = Field(None, description="Column names for a header-less file.")

    _delimiter = field_validator("delimiter")(_one_character)

    @model_validator(mode="after")
    def _consistent(self) -> LookupFile:
        if len(self.join) != 1 or not self.columns:
            raise ValueError("a lookup needs one join key and at least one column")
        if not self.header and not set(self.source_columns()) <= set(self.column_names or []):
            raise ValueError("header false needs column_names naming every column the lookup reads")
        return self

    def source_columns(self) -> dict[str, str]:
        read = {column: f"lookup {canonical}" for canonical, column in self.columns.items()}
        read.update({column: f"join key ({canonical})" for canonical, column in self.join.items()})
        return read


# keys that say one thing together: a side file that sets one of them replaces all of them
_GROUPS = ({"timestamp_unit", "timestamp_format", "timestamp"}, {"event_type", "event_types"})


def inherit(main: dict[str, Any], side: Any) -> Any:
    """A side file's raw keys completed from the main mapping's (events files: every key; lookups: the delimiter)."""
    if not isinstance(side, dict):
        return side
    if side.get("kind") == "lookup":
        return {"delimiter": main.get("delimiter", ","), **side}
    if side.get("kind") != "events":
        return side
    merged = {k: v for k, v in main.items() if k not in {"name", "side_files"}}
    for group in _GROUPS:
        if group & side.keys():
            for key in group:
                merged.pop(key, None)
    if "columns" not in side and isinstance(merged.get("columns"), dict):
        dropped = set()
        if isinstance(side.get("event_type"), dict) and "constant" in side["event_type"]:
            dropped.add("event_type")
        if "timestamp" in side:
            dropped.add("event_timestamp")
        merged["columns"] = {k: v for k, v in merged["columns"].items() if k not in dropped}
    return {**merged, **side}
