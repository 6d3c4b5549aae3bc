"""Read a source file in any `SourceFormat`, validate it, sessionise it and return canonical events + rejects.

The fast path reads typed columns straight from CSV/Parquet (pyarrow, multi-threaded). If a column does not
convert (a letter in an id, say), the file is read again as text and converted value by value to nulls, so the bad
values are *reported* with their row instead of failing the load. Malformed CSV lines are reported the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from journey.datasets.formats import SourceFormat
from journey.errors import BadEventError, InvalidInputError, NotFoundError
from journey.events import (
    EVENT_SCHEMA,
    REJECTS_SCHEMA,
    RejectReason,
    canonicalize,
    counts_by_reason,
    first_error,
    to_utc_micros,
    validate_events,
)
from journey.sessions import sessionise

log = logging.getLogger(__name__)

_INT_TEXT = r"^\s*[+-]?\d+(\.0*)?\s*$"
_FLOAT_TEXT = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_NUMERIC_FIELDS = {
    "user_id": pa.int64(),
    "item_id": pa.int64(),
    "category_id": pa.int64(),
    "price": pa.float64(),
}
_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


@dataclass(frozen=True)
class ImportResult:
    """Canonical events of one source plus everything that was rejected on the way."""

    events: pa.Table
    rejects: pa.Table
    rows_in: int
    source: str
    format: str

    @property
    def rows_rejected(self) -> int:
        return int(pc.count_distinct(self.rejects["row"]).as_py()) if self.rejects.num_rows else 0

    def counts_by_reason(self) -> dict[str, int]:
        return counts_by_reason(self.rejects)

    def first_error(self) -> BadEventError | None:
        return first_error(self.rejects)


@dataclass
class _Read:
    table: pa.Table  # source columns, typed where possible
    raw: dict[str, pa.Array] = field(default_factory=dict)  # canonical field -> source text, where parsing may fail
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (data row, text)
    rows: np.ndarray | None = None  # data row number per table row, when malformed rows were skipped


def _csv_types(fmt: SourceFormat, as_text: bool) -> dict[str, pa.DataType]:
    types: dict[str, pa.DataType] = {}
    for canonical, column in fmt.columns.items():
        if canonical == "event_type":
            types[column] = pa.dictionary(pa.int32(), pa.string())
        elif as_text or canonical in {"event_id", "session_id"}:
            types[column] = pa.string()
        elif canonical == "event_timestamp":
            types[column] = pa.int64() if fmt.timestamp_unit else pa.string()
        else:
            types[column] = _NUMERIC_FIELDS[canonical]
    return types


def _read_csv(path: Path, fmt: SourceFormat, as_text: bool) -> _Read:
    malformed: list[tuple[int, str]] = []

    def on_invalid(row: pcsv.InvalidRow) -> str:
        malformed.append((row.number if row.number is not None else -1, row.text))
        return "skip"

    read_opts = pcsv.ReadOptions(
        column_names=None if fmt.header else fmt.column_names,
        use_threads=True,
        block_size=16 << 20,
    )
    parse_opts = pcsv.ParseOptions(invalid_row_handler=on_invalid)
    convert_opts = pcsv.ConvertOptions(
        column_types=_csv_types(fmt, as_text),
        include_columns=sorted(set(fmt.columns.values())),
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    table = pcsv.read_csv(path, read_options=read_opts, parse_options=parse_opts, convert_options=convert_opts)
    read = _Read(table)
    if malformed:
        # line numbers are only known single-threaded; re-read that way so every reported row is exact
        malformed.clear()
        read_opts.use_threads = False
        table = pcsv.read_csv(path, read_options=read_opts, parse_options=parse_opts, convert_options=convert_opts)
        header_lines = 1 if fmt.header else 0
        bad_lines = np.array([m[0] - header_lines for m in malformed], dtype=np.int64)
        all_rows = np.arange(1, table.num_rows + len(malformed) + 1, dtype=np.int64)
        read = _Read(
            table,
            malformed=[(int(r), t) for r, (_, t) in zip(bad_lines, malformed, strict=True)],
            rows=np.setdiff1d(all_rows, bad_lines),
        )
    return read


def _read(path: Path, fmt: SourceFormat) -> _Read:
    if not path.exists():
        raise NotFoundError(f"source file not found: {path}")
    if path.suffix == ".parquet" or path.is_dir():
        table = pq.read_table(path, columns=sorted(set(fmt.columns.values())))
        return _Read(table)
    try:
        return _read_csv(path, fmt, as_text=False)
    except pa.ArrowInvalid as exc:
        if "CSV parse error" in str(exc) and "column" not in str(exc).lower():
            raise InvalidInputError(f"{path}: not a readable CSV file: {exc}", field="source") from exc
        log.info("typed CSV read failed, re-reading as text to report bad values", extra={"error": str(exc)})
        return _read_csv(path, fmt, as_text=True)


def _parse_numeric(col: pa.ChunkedArray | pa.Array, target: pa.DataType) -> tuple[pa.Array, pa.Array | None]:
    """Typed column -> itself; text column -> parsed values (null where not a number) and the source text."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
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


def _parse_timestamps(col: pa.ChunkedArray | pa.Array, fmt: SourceFormat) -> tuple[pa.Array, pa.Array]:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if fmt.timestamp_unit:
        ints, raw = _parse_numeric(arr, pa.int64())
        scale = {"s": 1_000_000, "ms": 1_000, "us": 1}[fmt.timestamp_unit]
        micros = pc.multiply_checked(ints, scale) if scale != 1 else ints
        return pc.cast(micros, pa.timestamp("us", tz="UTC")), raw if raw is not None else arr
    if pa.types.is_timestamp(arr.type):
        return to_utc_micros(arr, fmt.timezone), arr
    text = pc.cast(arr, pa.string())
    if fmt.timestamp_format == "iso":
        return _parse_iso(text, fmt.timezone), text
    parsed = pc.strptime(text, format=fmt.timestamp_format, unit="us", error_is_null=True)
    return to_utc_micros(parsed, fmt.timezone), text


def _parse_iso(text: pa.Array, timezone: str) -> pa.Array:
    """ISO 8601 with or without offsets in one column: aware values keep their instant, naive are in `timezone`."""
    series = pd.Series(text.to_pandas(), dtype="string")
    aware = series.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True).fillna(False).astype(bool)
    out = pd.Series(pd.NaT, index=series.index, dtype="datetime64[us, UTC]")
    if aware.any():
        out[aware] = pd.to_datetime(series[aware], format="ISO8601", utc=True, errors="coerce")
    if (~aware).any():
        naive = pd.to_datetime(series[~aware], format="ISO8601", errors="coerce")
        out[~aware] = naive.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    return pa.array(out, pa.timestamp("us", tz="UTC"))


def _map_event_types(col: pa.ChunkedArray | pa.Array, mapping: Mapping[str, str]) -> pa.Array:
    """Map through the (tiny) dictionary, not per row; unknown values stay as they were for the report."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(pc.cast(arr, pa.string()))
    names = [None if v is None else mapping.get(v, v) for v in arr.dictionary.to_pylist()]
    return pa.DictionaryArray.from_arrays(arr.indices, pa.array(names, pa.string()))


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


def _candidate(read: _Read, fmt: SourceFormat) -> tuple[pa.Table, dict[str, pa.Array]]:
    """Source columns -> canonical names and types (nulls where values did not parse)."""
    t = read.table
    n = t.num_rows
    raw: dict[str, pa.Array] = {}
    cols: dict[str, pa.Array] = {}
    for name, target in _NUMERIC_FIELDS.items():
        if name in fmt.columns:
            cols[name], text = _parse_numeric(t[fmt.columns[name]], target)
            if text is not None:
                raw[name] = text
        else:
            cols[name] = pa.nulls(n, target)
    cols["event_type"] = _map_event_types(t[fmt.columns["event_type"]], fmt.event_types)
    cols["event_timestamp"], raw["event_timestamp"] = _parse_timestamps(t[fmt.columns["event_timestamp"]], fmt)
    for name in ("session_id", "event_id"):
        if name in fmt.columns:
            cols[name] = pc.cast(t[fmt.columns[name]].combine_chunks(), pa.string())
    if "session_id" not in cols:
        cols["session_id"] = pa.nulls(n, pa.string())
    if "event_id" not in cols:
        cols["event_id"] = pa.array(_row_key(cols))
    return pa.table({f.name: cols[f.name] for f in EVENT_SCHEMA}), raw


def _row_key(cols: dict[str, pa.Array]) -> np.ndarray:
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
    return content_key(*parts)


def _malformed_rejects(read: _Read) -> pa.Table:
    if not read.malformed:
        return REJECTS_SCHEMA.empty_table()
    rows, texts = zip(*read.malformed, strict=True)
    return pa.table(
        {
            "row": list(rows),
            "field": ["<line>"] * len(rows),
            "value": list(texts),
            "reason": [RejectReason.MALFORMED_ROW.value] * len(rows),
        },
        schema=REJECTS_SCHEMA,
    )


def _prefix_ids(rejects: pa.Table, prefix: str) -> pa.Table:
    """Show content-derived ids in rejects exactly as they would have been stored (see events.hex_ids)."""
    if not prefix or rejects.num_rows == 0:
        return rejects
    fields, values = rejects["field"].to_pylist(), rejects["value"].to_pylist()
    shown = [f"{prefix}{int(v):016x}" if f == "event_id" else v for f, v in zip(fields, values, strict=True)]
    return rejects.set_column(rejects.schema.get_field_index("value"), "value", pa.array(shown, pa.string()))


def _assign_sessions(valid: pa.Table, timeout_s: int) -> pa.Table:
    users = valid["user_id"].to_numpy()
    ts = pc.cast(valid["event_timestamp"], pa.int64()).to_numpy()
    sessions = sessionise(users, ts, timeout_s * 1_000_000)
    return valid.set_column(valid.schema.get_field_index("session_id"), "session_id", sessions.session_ids())


def import_events(
    path: Path,
    fmt: SourceFormat,
    *,
    session_timeout_s: int,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> ImportResult:
    """Parse + validate + sessionise one source file. Never raises for bad rows: they are in `rejects`."""
    step = progress or (lambda _name: None)
    step("read")
    read = _read(path, fmt)
    step("validate")
    candidate, raw = _candidate(read, fmt)
    result = validate_events(candidate, now=now, source_rows=read.rows, raw=raw, check_session=fmt.has_sessions)
    valid = result.valid
    if not fmt.has_sessions:
        step("sessionise")
        valid = _assign_sessions(valid, session_timeout_s)
    prefix = "" if fmt.has_event_ids else f"{fmt.name}-"
    events = canonicalize(valid, event_id_prefix=prefix)
    rejects = pa.concat_tables([_malformed_rejects(read), _prefix_ids(result.rejects, prefix)]).sort_by("row")
    log.info(
        "imported events",
        extra={
            "source": str(path),
            "rows_in": result.rows_in + len(read.malformed),
            "rows_ok": events.num_rows,
            "rows_rejected": rejects.num_rows,
        },
    )
    return ImportResult(
        events=events,
        rejects=rejects,
        rows_in=result.rows_in + len(read.malformed),
        source=str(path),
        format=fmt.name,
    )
