"""One file's source columns -> a candidate table with canonical names and types, ready for validation.

Values that did not parse are null here, with the source text kept in `raw` so the report shows it. Users come from
the user column or, per the mapping's `anonymous_users`, from the session; event ids from the id column or a content
hash of the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from journey.datasets.mapping import FileMapping
from journey.datasets.parsing import (
    combined,
    constant_event_type,
    map_event_types,
    parse_date_offset,
    parse_numeric,
    parse_timestamps,
)
from journey.datasets.reading import Layout, Read, Types, read_file
from journey.events import EVENT_SCHEMA

NUMERIC_FIELDS = {"item_id": pa.int64(), "category_id": pa.int64(), "price": pa.float64()}
_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))
_ANONYMOUS_BITS = 52  # anonymous ids stay within JSON's exact integers (JavaScript clients send them back)


@dataclass(frozen=True)
class Candidate:
    """A file's rows as canonical columns, the source text of the fields that may not parse, and its data rows."""

    table: pa.Table
    raw: dict[str, pa.Array]
    rows: np.ndarray  # 1-based data row of each table row
    anonymous_rows: int  # rows whose user came from their session (anonymous_users)


def _types(fmt: FileMapping, mode: str) -> Types:
    """Column types to read: `typed` (fast), `fractional` (epoch times as floats) or `text` (report bad values)."""
    types: dict[str, pa.DataType] = {}
    for column, canonical in fmt.source_columns().items():
        if canonical == "event_type":
            types[column] = pa.dictionary(pa.int32(), pa.string())
        elif mode == "text" or canonical in {"event_id", "session_id", "timestamp.date"}:
            types[column] = pa.string()
        elif canonical == "timestamp.offset":
            types[column] = pa.float64()
        elif canonical == "event_timestamp":
            epoch = pa.float64() if mode == "fractional" else pa.int64()
            types[column] = epoch if fmt.timestamp_unit else pa.string()
        else:
            types[column] = NUMERIC_FIELDS.get(canonical, pa.int64())
    return types


def read_mapped(path: Path, fmt: FileMapping) -> Read:
    """The columns `fmt` maps, from the fastest read that converts."""
    modes = ["typed", "fractional", "text"] if fmt.timestamp_unit else ["typed", "text"]
    layout = Layout(fmt.delimiter, fmt.header, fmt.column_names)
    return read_file(path, layout, [_types(fmt, mode) for mode in modes], fmt.source_columns())


def build_candidate(read: Read, fmt: FileMapping, *, key_salt: int = 0, row_offset: int = 0) -> Candidate:
    """Source columns -> canonical names and types; `key_salt` keeps content ids of side files apart."""
    t = read.table
    n = t.num_rows
    raw: dict[str, pa.Array] = {}
    cols: dict[str, pa.Array] = {}
    for name, target in NUMERIC_FIELDS.items():
        if name in fmt.columns:
            cols[name], text = parse_numeric(t[fmt.columns[name]], target)
            if text is not None:
                raw[name] = text
        else:
            cols[name] = pa.nulls(n, target)
    cols["event_type"] = _event_types(t, fmt)
    cols["event_timestamp"], raw["event_timestamp"] = _timestamps(t, fmt)
    for name in ("session_id", "event_id"):
        if name in fmt.columns:
            cols[name] = pc.cast(combined(t[fmt.columns[name]]), pa.string())
    if "session_id" not in cols:
        cols["session_id"] = pa.nulls(n, pa.string())
    cols["user_id"], user_text, anonymous = _users(t, fmt, cols["session_id"])
    if user_text is not None:
        raw["user_id"] = user_text
    if "event_id" not in cols:
        cols["event_id"] = pa.array(_row_key(cols, key_salt))
    table = pa.table({f.name: cols[f.name] for f in EVENT_SCHEMA})
    return Candidate(table, raw, read.source_rows() + row_offset, anonymous)


def _event_types(t: pa.Table, fmt: FileMapping) -> pa.Array:
    rule = fmt.event_type
    if rule is not None and rule.constant is not None:
        return constant_event_type(t.num_rows, rule.constant)
    return map_event_types(t[fmt.columns["event_type"]], fmt.event_types, rule.default if rule else None)


def _timestamps(t: pa.Table, fmt: FileMapping) -> tuple[pa.Array, pa.Array]:
    parts = fmt.timestamp
    if parts is None:
        return parse_timestamps(t[fmt.columns["event_timestamp"]], fmt)
    offset = t[parts.offset] if parts.offset is not None else None
    return parse_date_offset(t[parts.date], offset, parts, fmt.timezone)


def _users(t: pa.Table, fmt: FileMapping, sessions: pa.Array) -> tuple[pa.Array, pa.Array | None, int]:
    """User ids, their source text where parsing may fail, and how many rows took their user from the session."""
    if fmt.anonymous_users == "session":  # no user column: the session number is the user id
        users, text = parse_numeric(sessions, pa.int64())
        return users, text, len(users) - users.null_count
    if "user_id" in fmt.columns:
        users, text = parse_numeric(t[fmt.columns["user_id"]], pa.int64())
    else:
        users, text = pa.nulls(t.num_rows, pa.int64()), None
    if fmt.anonymous_users == "reject" or not users.null_count:
        return users, text, 0
    absent = users.is_null()
    if text is not None:  # a user id that is there but not a number stays an error, it is not anonymous
        absent = pc.and_(absent, pc.equal(pc.utf8_length(pc.fill_null(pc.utf8_trim_whitespace(text), "")), 0))
    absent = pc.and_(absent, pc.fill_null(pc.greater(pc.utf8_length(sessions), 0), False))
    filled = pc.if_else(absent, anonymous_ids(sessions), users)
    return filled, text, int(pc.sum(absent).as_py() or 0)


def anonymous_ids(sessions: pa.Array) -> pa.Array:
    """A stable negative user id per session: -1 - (52 bits of the session text's SipHash), the same in every import."""
    encoded = pc.dictionary_encode(combined(sessions))
    distinct = np.asarray(encoded.dictionary.to_numpy(zero_copy_only=False), dtype=object)
    hashed = pd.util.hash_array(distinct, categorize=False) >> np.uint64(64 - _ANONYMOUS_BITS)
    ids = -1 - hashed.astype(np.int64)
    return pc.take(pa.array(ids, pa.int64()), encoded.indices)


def content_key(*columns: np.ndarray) -> np.ndarray:
    """A 64-bit hash of integer columns per row (splitmix64 rounds): the event id of sources without one.

    Identical rows get identical keys, so exact duplicate events are reported as duplicate_event_id.
    """
    h = np.zeros(columns[0].size, dtype=np.uint64)
    for col in columns:
        h ^= col.astype(np.uint64, copy=False)
        h *= _MIX[0]
        h ^= h >> np.uint64(31)
        h *= _MIX[1]
        h ^= h >> np.uint64(29)
        h *= _MIX[2]
    return h


def _null_to(value: int, arr: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, value).to_numpy(zero_copy_only=False))


def _row_key(cols: dict[str, pa.Array], salt: int) -> np.ndarray:
    """Content key of every field that tells two events apart; strings (sessions) via pandas' stable siphash."""
    n = len(cols["user_id"])
    event_type = cols["event_type"]
    code = (
        event_type.indices if isinstance(event_type, pa.DictionaryArray) else pc.dictionary_encode(event_type).indices
    )
    parts = [
        _null_to(0, pc.cast(cols["event_timestamp"], pa.int64())),
        _null_to(0, cols["user_id"]),
        _null_to(0, cols["item_id"]),
        _null_to(-1, code),
        np.asarray(pc.fill_null(cols["price"], np.nan).to_numpy(zero_copy_only=False)).view(np.uint64),
    ]
    if cols["session_id"].null_count < n:
        sessions = cols["session_id"].to_numpy(zero_copy_only=False)
        parts.append(pd.util.hash_array(sessions, categorize=True))
    if salt:
        parts.append(np.full(n, salt, dtype=np.uint64))
    return content_key(*parts)
