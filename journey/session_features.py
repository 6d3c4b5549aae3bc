"""Events -> `session_activity` rows: the state of a session after each of its events.

The same code serves the online path (`/events` folds new events onto the session's stored state and pushes the
result) and the offline backfill (history replayed from the event log), so training and serving see identical
session features. Vectorised with numpy: one row per event, lists of the last N events (item, type, time, category)
built as list views.

A continued session (`prior`) is seeded with its stored lists, so the lists it gets are exactly those a replay of
the whole session gives: that is why times are stored in whole seconds (what the online store keeps of them) and a
missing category as -1 (a list of int64 cannot hold a null).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from journey.contracts import LAST_N_EVENTS, SESSION, USER
from journey.sessions import stable_argsort

SESSION_ROW_SCHEMA = pa.schema(
    [
        pa.field(SESSION, pa.string()),
        pa.field(USER, pa.int64()),
        pa.field("event_timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("created", pa.timestamp("us", tz="UTC")),
        pa.field("session_events", pa.int64()),
        pa.field("session_views", pa.int64()),
        pa.field("session_carts", pa.int64()),
        pa.field("session_purchases", pa.int64()),
        pa.field("session_seconds_since_start", pa.float64()),
        pa.field("session_last_item_ids", pa.list_(pa.int64())),
        pa.field("session_last_event_types", pa.list_(pa.string())),
        pa.field("session_last_event_ts", pa.list_(pa.int64())),
        pa.field("session_last_category_ids", pa.list_(pa.int64())),
    ]
)

NO_CATEGORY = -1  # category_id of an event without one, in `session_last_category_ids`
_WINDOW_COLUMNS = {  # list feature <- per-event column the window is cut from
    "session_last_item_ids": "item_id",
    "session_last_event_types": "event_type",
    "session_last_event_ts": "ts_s",
    "session_last_category_ids": "category_id",
}
_SEED_SCHEMA = pa.schema(
    [
        pa.field(SESSION, pa.string()),
        pa.field("item_id", pa.int64()),
        pa.field("event_type", pa.string()),
        pa.field("ts_s", pa.int64()),
        pa.field("category_id", pa.int64()),
    ]
)

_COUNTED = {"session_views": "view", "session_carts": "add_to_cart", "session_purchases": "purchase"}


def empty_session_rows() -> pa.Table:
    return SESSION_ROW_SCHEMA.empty_table()


def _np(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return np.asarray(arr.to_numpy(zero_copy_only=False))


def _ts_us(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return _np(pc.cast(col, pa.int64()))


def _prior_as_events(prior: pa.Table) -> pa.Table:
    """Stored session states -> pseudo-events carrying their last events (they seed the windows)."""
    sizes = pc.list_value_length(prior["session_last_item_ids"]).fill_null(0).to_numpy(zero_copy_only=False)
    sessions = np.repeat(np.arange(prior.num_rows), sizes)
    stamps = _ts_us(prior["event_timestamp"]) // 1_000_000
    return pa.table(
        {
            SESSION: prior[SESSION].take(pa.array(sessions)),
            "item_id": pc.list_flatten(prior["session_last_item_ids"]),
            "event_type": pc.list_flatten(prior["session_last_event_types"]),
            "ts_s": _flat_or(prior["session_last_event_ts"], sizes, np.repeat(stamps, sizes)),
            "category_id": _flat_or(prior["session_last_category_ids"], sizes, np.full(sizes.sum(), NO_CATEGORY)),
        },
        schema=_SEED_SCHEMA,
    )


def _flat_or(lists: pa.ChunkedArray, sizes: np.ndarray, fallback: np.ndarray) -> pa.Array:
    """The flattened lists, or `fallback` for a row whose list is missing or of another length than its items.

    A state stored before the list existed (an online row written by an older version) reads back as null: its
    session continues with the best values known (the state's own time, no category) instead of failing.
    """
    own = pc.list_value_length(lists).fill_null(-1).to_numpy(zero_copy_only=False)
    if (own == sizes).all():
        return pc.list_flatten(lists).cast(pa.int64())
    values = fallback.astype(np.int64)
    good = np.repeat(own == sizes, sizes)
    kept = pc.list_flatten(lists.filter(pa.array(own == sizes)))
    values[good] = _np(kept)
    return pa.array(values, pa.int64())


def _event_columns(events: pa.Table) -> pa.Table:
    """The per-event columns the windows are cut from: times in whole seconds, a missing category as -1."""
    return pa.table(
        {
            SESSION: pc.cast(events[SESSION], pa.string()),
            "item_id": pc.cast(events["item_id"], pa.int64()),
            "event_type": pc.cast(events["event_type"], pa.string()),
            "ts_s": pa.array(_ts_us(events["event_timestamp"]) // 1_000_000, pa.int64()),
            "category_id": pc.fill_null(pc.cast(events["category_id"], pa.int64()), NO_CATEGORY),
        },
        schema=_SEED_SCHEMA,
    )


def session_rows(events: pa.Table, prior: pa.Table | None = None, created: datetime | None = None) -> pa.Table:
    """One `session_activity` row per event: the session's state right after it.

    `prior` holds the sessions' stored state (rows of SESSION_ROW_SCHEMA, at most one per session) that the new
    events continue; without it every session starts with these events.
    """
    if events.num_rows == 0:
        return empty_session_rows()
    prior = prior if prior is not None and prior.num_rows else None
    n_new = events.num_rows
    new_part = _event_columns(events)
    seeds = _prior_as_events(prior) if prior is not None else _SEED_SCHEMA.empty_table()
    combined = pa.concat_tables([seeds, new_part])
    is_new = np.concatenate([np.zeros(seeds.num_rows, bool), np.ones(n_new, bool)])

    codes = _np(pc.fill_null(pc.dictionary_encode(combined[SESSION].combine_chunks()).indices, -1))
    # seeds first (they are older), then new events by time; stable sorts keep seed order
    ts = np.concatenate([np.full(seeds.num_rows, np.iinfo(np.int64).min // 2), _ts_us(events["event_timestamp"])])
    by_time = stable_argsort(ts)
    order = by_time[stable_argsort(codes[by_time])]
    code_sorted = codes[order]
    group_start = np.flatnonzero(np.r_[True, code_sorted[1:] != code_sorted[:-1]])
    start_of = np.repeat(group_start, np.diff(np.r_[group_start, len(order)]))
    pos = np.arange(len(order))

    new_sorted = is_new[order]
    types = _np(combined["event_type"])[order]
    counts = {name: _group_cumsum(new_sorted & (types == kind), start_of) for name, kind in _COUNTED.items()}
    counts["session_events"] = _group_cumsum(new_sorted, start_of)

    window_start = np.maximum(start_of, pos - LAST_N_EVENTS + 1)
    emit = np.flatnonzero(new_sorted)
    sorted_columns = combined.select(list(_WINDOW_COLUMNS.values())).take(pa.array(order))
    windows = _windows(
        window_start[emit],
        pos[emit] + 1,
        {name: sorted_columns[column].combine_chunks() for name, column in _WINDOW_COLUMNS.items()},
    )

    event_index = order[emit] - seeds.num_rows  # positions in `events`
    return _assemble(events, event_index, {k: v[emit] for k, v in counts.items()}, prior, windows, created)


def _windows(starts: np.ndarray, ends: np.ndarray, values: dict[str, pa.Array]) -> dict[str, pa.Array]:
    """Overlapping slices [start, end) of each sorted column as list arrays (one gather, no Python loop)."""
    sizes = ends - starts
    offsets = np.r_[0, np.cumsum(sizes)]
    flat = np.repeat(starts - offsets[:-1], sizes) + np.arange(offsets[-1])
    gather = pa.array(flat)
    arrow_offsets = pa.array(offsets.astype(np.int32))
    return {name: pa.ListArray.from_arrays(arrow_offsets, column.take(gather)) for name, column in values.items()}


def _group_cumsum(flags: np.ndarray, start_of: np.ndarray) -> np.ndarray:
    total = np.cumsum(flags, dtype=np.int64)
    before = np.r_[0, total][start_of]
    result: np.ndarray = total - before
    return result


def _assemble(
    events: pa.Table,
    event_index: np.ndarray,
    counts: dict[str, np.ndarray],
    prior: pa.Table | None,
    windows: dict[str, pa.Array],
    created: datetime | None,
) -> pa.Table:
    take = pa.array(event_index)
    sessions = events[SESSION].combine_chunks().take(take)
    ts = _ts_us(events["event_timestamp"])[event_index]
    base = {name: np.zeros(len(event_index), np.int64) for name in counts}
    start = _first_ts_per_session(sessions, ts)
    if prior is not None:
        idx = _np(pc.index_in(sessions, value_set=prior[SESSION].combine_chunks()))
        known = ~np.isnan(idx.astype(float))
        rows = np.where(known, idx, 0).astype(np.int64)
        for name in base:
            base[name] = np.where(known, _np(prior[name])[rows], 0)
        prior_start = _ts_us(prior["event_timestamp"])[rows] - (
            _np(prior["session_seconds_since_start"])[rows] * 1e6
        ).astype(np.int64)
        start = np.where(known, np.minimum(prior_start, start), start)
    created_at = created or datetime.now(UTC)
    columns = {
        SESSION: sessions,
        USER: events[USER].take(take),
        "event_timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "created": pa.array([created_at] * len(event_index), pa.timestamp("us", tz="UTC")),
        **{
            name: pa.array(base[name] + counts[name])
            for name in ("session_events", "session_views", "session_carts", "session_purchases")
        },
        "session_seconds_since_start": pa.array((ts - start) / 1e6),
        **windows,
    }
    return pa.table(columns, schema=SESSION_ROW_SCHEMA)


def _first_ts_per_session(sessions: pa.Array, ts: np.ndarray) -> np.ndarray:
    codes = _np(pc.dictionary_encode(sessions).indices)
    first = np.full(codes.max() + 1, np.iinfo(np.int64).max)
    np.minimum.at(first, codes, ts)
    result: np.ndarray = first[codes]
    return result


def latest_per_session(rows: pa.Table) -> pa.Table:
    """The newest row of each session (what the online store should hold)."""
    if rows.num_rows == 0:
        return rows
    ordered = rows.sort_by([(SESSION, "ascending"), ("event_timestamp", "ascending"), ("session_events", "ascending")])
    sessions = _np(pc.cast(ordered[SESSION], pa.string()))
    last = np.flatnonzero(np.r_[sessions[1:] != sessions[:-1], True])
    return ordered.take(pa.array(last))
