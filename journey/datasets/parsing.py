"""Source columns -> canonical values, vectorised: numbers, timestamps (epoch, patterns, ISO, date + offset), types.

Every parser returns nulls where a value does not parse, plus the source text of the column where it could fail, so
validation reports the bad value with its row instead of failing the load.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from journey.datasets.mapping import FileMapping, TimestampParts, TimeUnit
from journey.events import to_utc_micros

Column: TypeAlias = pa.ChunkedArray | pa.Array

_INT_TEXT = r"^\s*[+-]?\d+(\.0*)?\s*$"
_FLOAT_TEXT = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_SCALE: dict[TimeUnit, int] = {"s": 1_000_000, "ms": 1_000, "us": 1}
# datetime's range (years 1..9999) in microseconds: a number outside it is no time, and Python could not show it
_MIN_US, _MAX_US = -62_135_596_800_000_000, 253_402_300_799_999_999
UTC_US = pa.timestamp("us", tz="UTC")


def combined(col: Column) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def is_text(arr: pa.Array) -> bool:
    return bool(pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type))


def parse_numeric(col: Column, target: pa.DataType) -> tuple[pa.Array, pa.Array | None]:
    """Typed column -> itself; text column -> parsed values (null where not a number) and the source text."""
    arr = combined(col)
    if not is_text(arr):
        return pc.cast(arr, target), None
    pattern = _INT_TEXT if pa.types.is_integer(target) else _FLOAT_TEXT
    ok = pc.fill_null(pc.match_substring_regex(arr, pattern), False)
    text = pc.if_else(ok, pc.utf8_trim_whitespace(arr), pa.scalar(None, pa.string()))
    if pa.types.is_integer(target):
        text = pc.replace_substring_regex(text, r"\.0*$", "")
    try:
        return pc.cast(text, target), arr
    except pa.ArrowInvalid:  # out of range for int64: report those as unparsable too
        values = [int(v) if v is not None and -(2**63) <= int(v) < 2**63 else None for v in text.to_pylist()]
        return pa.array(values, target), arr


def _in_range(values: pa.Array, low: float, high: float) -> pa.Array:
    """`values` with those outside [low, high] nulled (only scanned again when the extremes say so)."""
    if values.null_count == len(values):
        return values
    extremes = pc.min_max(values).as_py()
    if extremes["min"] >= low and extremes["max"] <= high:
        return values
    if pa.types.is_integer(values.type):
        bounds = pa.scalar(math.ceil(low), values.type), pa.scalar(math.floor(high), values.type)
    else:
        bounds = pa.scalar(float(low), values.type), pa.scalar(float(high), values.type)
    inside = pc.and_(pc.greater_equal(values, bounds[0]), pc.less_equal(values, bounds[1]))
    return pc.if_else(inside, values, pa.scalar(None, values.type))


def duration_us(col: Column, unit: TimeUnit) -> tuple[pa.Array, pa.Array | None]:
    """A number of `unit`s (integer or fractional, typed or text) -> int64 microseconds, null where it is no time."""
    arr = combined(col)
    if is_text(arr):
        values, raw = parse_numeric(arr, pa.float64())
    else:
        values, raw = arr, None
    scale = _SCALE[unit]
    if pa.types.is_integer(values.type):
        ints = _in_range(pc.cast(values, pa.int64()), _MIN_US / scale, _MAX_US / scale)
        return (pc.multiply(ints, scale) if scale != 1 else ints), raw
    micros = pc.round(pc.multiply(pc.cast(values, pa.float64()), float(scale)))
    micros = _in_range(pc.if_else(pc.is_finite(micros), micros, pa.scalar(None, pa.float64())), _MIN_US, _MAX_US)
    return pc.cast(micros, pa.int64()), raw


def parse_timestamps(col: Column, fmt: FileMapping) -> tuple[pa.Array, pa.Array]:
    """The event time column -> UTC microseconds, and what the source had (for the report)."""
    arr = combined(col)
    if fmt.timestamp_unit:
        micros, raw = duration_us(arr, fmt.timestamp_unit)
        return pc.cast(micros, UTC_US), raw if raw is not None else arr
    if pa.types.is_timestamp(arr.type):
        return to_utc_micros(arr, fmt.timezone), arr
    text = pc.cast(arr, pa.string())
    if fmt.timestamp_format == "iso":
        return parse_iso(text, fmt.timezone), text
    parsed = pc.strptime(text, format=fmt.timestamp_format, unit="us", error_is_null=True)
    return to_utc_micros(parsed, fmt.timezone), text


def parse_date_offset(
    date: Column, offset: Column | None, parts: TimestampParts, timezone: str
) -> tuple[pa.Array, pa.Array]:
    """Midnight of the date in `timezone` plus the offset; the report shows `date + offset` as the source had them."""
    day = combined(date)
    if pa.types.is_date(day.type) or pa.types.is_timestamp(day.type):
        midnight = to_utc_micros(pc.cast(day, pa.timestamp("us")), timezone)
    else:
        text = pc.cast(day, pa.string())
        midnight = to_utc_micros(pc.strptime(text, format=parts.date_format, unit="us", error_is_null=True), timezone)
    raw = pc.cast(day, pa.string())
    if offset is None:
        return midnight, raw
    micros, _ = duration_us(offset, parts.offset_unit)
    total = _in_range(pc.add(pc.cast(midnight, pa.int64()), micros), _MIN_US, _MAX_US)
    shown = pc.binary_join_element_wise(
        raw, pc.cast(combined(offset), pa.string()), " + ", null_handling="replace", null_replacement=""
    )
    return pc.cast(total, UTC_US), shown


def parse_iso(text: pa.Array, timezone: str) -> pa.Array:
    """ISO 8601 with or without offsets in one column: aware values keep their instant, naive are in `timezone`."""
    series = pd.Series(text.to_pandas(), dtype="string")
    aware = series.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True).fillna(False).astype(bool)
    out = pd.Series(pd.NaT, index=series.index, dtype="datetime64[us, UTC]")
    if aware.any():
        out[aware] = pd.to_datetime(series[aware], format="ISO8601", utc=True, errors="coerce")
    if (~aware).any():
        naive = pd.to_datetime(series[~aware], format="ISO8601", errors="coerce")
        out[~aware] = naive.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    return pa.array(out, UTC_US)


def map_event_types(col: Column, mapping: Mapping[str, str], default: str | None = None) -> pa.DictionaryArray:
    """Map through the (tiny) dictionary, not per row; unknown values stay as they were for the report.

    With a `default`, empty cells take it; without, they stay empty and are reported.
    """
    arr = combined(col)
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(pc.cast(arr, pa.string()))
    names = [None if v is None else mapping.get(v, v) for v in arr.dictionary.to_pylist()]
    indices = arr.indices
    if default is not None:
        names = [default if v in (None, "") else v for v in names]
        if indices.null_count:
            indices = pc.fill_null(indices, pa.scalar(len(names), indices.type))
            names.append(default)
    return pa.DictionaryArray.from_arrays(indices, pa.array(names, pa.string()))


def constant_event_type(rows: int, value: str) -> pa.DictionaryArray:
    """The same canonical type on every row: one dictionary entry, zero indices."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), pa.array([value], pa.string()))
