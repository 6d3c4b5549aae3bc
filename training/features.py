"""Batch features: daily point-in-time snapshots of `user_activity` and `item_popularity`.

A snapshot for day D carries `event_timestamp` = D 00:00 UTC and is computed only from events strictly before it,
so Feast's point-in-time join can never hand a model an event from its own future. Windows are whole UTC days:
`_1d` = [D-1d, D), `_7d` = [D-7d, D), `_30d` = [D-30d, D). A (user, D) row exists when the user had an event in
the 30 days before D (items: 7 days), also on days without events, so the latest snapshot describes quiet users too.

How it stays fast (2M events, 100k users, 30 days: about 10 s of CPU, no Python loop over rows):

1. DuckDB, over the registered Arrow table, does what hash aggregation is good at: one row per (entity, day) with
   counts, price sums, the last purchase and the day's last event with its journey stage, and the first/last day of
   every (user, item|category|session) key; results come back sorted by (entity, day);
2. NumPy does the sliding part on those sorted rows: snapshot rows are generated from the active days (activity on
   day d covers snapshots d+1 .. min(d+window, next active day), so each snapshot knows its entity's latest active
   day), and a window sum is a difference of two prefix sums located with `searchsorted`. DuckDB's window frames
   (`RANGE BETWEEN 30 PRECEDING AND 1 PRECEDING`) give the same answers but cost about 0.5 s per column per 3M rows
   on two cores, and a range join of snapshots to active days about 6 s: measured, both lost by 5-10x;
3. distinct counts per sliding window: a key seen on day d counts for snapshots d+1 .. d+30, and sightings at most
   30 days apart merge into one run, which puts +1 at its first day + 1 and -1 at its last day + 31. The running sum
   of these markers at D is exactly the number of distinct keys in [D-30d, D), with no (user, day, item) x snapshot
   join. Keys seen within 30 days of their first sighting (nearly all) are one run straight from the aggregate; only
   longer-lived keys have their days sorted to find the gaps.

Sessions with a cart but no purchase in a window = |cart or purchase sessions| - |purchase sessions|, both exact
sliding distinct counts, so the abandonment rate respects the window even for sessions that straddle its edge.
Events tied on time are ordered by `event_id` wherever order matters (last event, last price, journey stage).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from journey.contracts import (
    ITEM,
    ITEM_POPULARITY,
    ITEM_POPULARITY_FEATURES,
    STAGES,
    USER,
    USER_ACTIVITY,
    USER_ACTIVITY_FEATURES,
    FeatureType,
)
from journey.datasets.store import DatasetStore
from journey.events import EVENT_TYPES
from journey.settings import Settings
from journey.stores.offline import OfflineTables

US_PER_DAY = 86_400_000_000
USER_WINDOW_DAYS = 30  # a user row exists when the user had an event within this many days before the snapshot
ITEM_WINDOW_DAYS = 7
RFM_BUCKETS = 5
_EPOCH = date(1970, 1, 1)
_TS = pa.timestamp("us", tz="UTC")
_ARROW: dict[FeatureType, pa.DataType] = {"int64": pa.int64(), "float64": pa.float64()}

# event_type codes inside the SQL (positions in EVENT_TYPES) and stage ordinals (positions in STAGES)
_VIEW, _CART, _REMOVE, _PURCHASE = (
    EVENT_TYPES.index(t) for t in ("view", "add_to_cart", "remove_from_cart", "purchase")
)
_DISCOVERY, _CONSIDERATION, _PURCHASE_STAGE, _POST_PURCHASE = (
    STAGES.index(s) for s in ("discovery", "consideration", "purchase", "post_purchase")
)
_COUNTED = {"views": _VIEW, "carts": _CART, "removes": _REMOVE, "purchases": _PURCHASE}
_SUMMED_COUNTS = ("n_events", "viewed_n", "bought_n")
_POS = "{'ts': ts, 'eid': eid}"  # event order: time, then event_id for ties

# Distinct counts of user_activity: (column, counted key, which events count); the last three are helpers of the
# abandonment rate. Each key's first and last day come from one hash aggregate per key column.
_DISTINCT = (
    ("distinct_items_30d", "i", "TRUE"),
    ("distinct_categories_30d", "c", "c IS NOT NULL"),
    ("sessions_30d", "s", "TRUE"),
    ("cart_sessions", "s", f"t = {_CART}"),
    ("purchase_sessions", "s", f"t = {_PURCHASE}"),
    ("cart_or_purchase_sessions", "s", f"t IN ({_CART}, {_PURCHASE})"),
)


def _user_spans_sql() -> str:
    """Table `u_spans(u, f, k, lo, hi)`: first and last day each key of each distinct-count family was seen."""
    parts = []
    for key in dict.fromkeys(k for _, k, _ in _DISTINCT):
        families = [(f, condition) for f, (_, k, condition) in enumerate(_DISTINCT) if k == key]
        bounds = ", ".join(
            f"min(day) FILTER (WHERE {cond}) AS lo{f}, max(day) FILTER (WHERE {cond}) AS hi{f}" for f, cond in families
        )
        spans = f"(SELECT u, {key} AS k, {bounds} FROM e GROUP BY u, {key})"
        parts += [
            f"SELECT u, {f} AS f, CAST(k AS BIGINT) AS k, lo{f} AS lo, hi{f} AS hi FROM {spans} WHERE lo{f} IS NOT NULL"
            for f, _ in families
        ]
    return f"CREATE TEMP TABLE u_spans AS {' UNION ALL '.join(parts)}"


_USER_DAILY_SQL = f"""
CREATE TEMP TABLE u_daily AS
SELECT u, day,
    {", ".join(f"count(*) FILTER (WHERE t = {code}) AS n_{name}" for name, code in _COUNTED.items())},
    count(*) AS n_events,
    coalesce(fsum(price) FILTER (WHERE t = {_VIEW}), 0) AS viewed_sum,
    count(price) FILTER (WHERE t = {_VIEW}) AS viewed_n,
    coalesce(fsum(price) FILTER (WHERE t = {_PURCHASE}), 0) AS bought_sum,
    count(price) FILTER (WHERE t = {_PURCHASE}) AS bought_n,
    max(ts) FILTER (WHERE t = {_PURCHASE}) AS last_purchase_ts,
    max(ts) AS last_ts,
    arg_max({{'pos': {_POS}, 's': s, 'i': i, 't': t}}, {_POS}) AS last_event
FROM e
GROUP BY u, day
"""

# Journey stage of each day's last event, judged on the earlier events of its session: a purchase is `purchase`;
# anything after a purchase is `post_purchase`; a cart change or a repeat view of an item is `consideration`;
# a first view of an item is `discovery`.
_USER_STAGE_SQL = f"""
WITH last AS (
    SELECT u, day, last_event.pos AS pos, last_event.s AS s, last_event.i AS i, last_event.t AS t FROM u_daily
),
first_purchase AS (
    SELECT e.u, e.s, min({{'ts': e.ts, 'eid': e.eid}}) AS pos
    FROM e SEMI JOIN last l ON e.u = l.u AND e.s = l.s
    WHERE e.t = {_PURCHASE}
    GROUP BY e.u, e.s
),
first_view AS (
    SELECT e.u, e.s, e.i, min({{'ts': e.ts, 'eid': e.eid}}) AS pos
    FROM e SEMI JOIN last l ON e.u = l.u AND e.s = l.s AND e.i = l.i
    WHERE e.t = {_VIEW}
    GROUP BY e.u, e.s, e.i
)
SELECT d.* EXCLUDE (last_event),
    CASE
        WHEN l.t = {_PURCHASE} THEN {_PURCHASE_STAGE}
        WHEN fp.pos < l.pos THEN {_POST_PURCHASE}
        WHEN l.t IN ({_CART}, {_REMOVE}) THEN {_CONSIDERATION}
        WHEN l.t = {_VIEW} AND fv.pos < l.pos THEN {_CONSIDERATION}
        ELSE {_DISCOVERY}
    END AS stage
FROM u_daily d
JOIN last l ON l.u = d.u AND l.day = d.day
LEFT JOIN first_purchase fp ON fp.u = l.u AND fp.s = l.s
LEFT JOIN first_view fv ON fv.u = l.u AND fv.s = l.s AND fv.i = l.i
ORDER BY d.u, d.day
"""


def _marks_sql(window: int, long_spans: bool) -> str:
    """Run markers of every distinct-count family per (u, day): +1 where a run starts counting, -1 after it ends.

    A key whose sightings span at most `window` days forms one run [first day, last day], straight from `u_spans`;
    only keys with a longer span (`long_spans`) need their days sorted to find the gaps between runs.
    """
    wide = ", ".join(
        f"CAST(coalesce(sum(delta) FILTER (WHERE f = {f}), 0) AS BIGINT) AS {column}"
        for f, (column, _, _) in enumerate(_DISTINCT)
    )
    marks = [
        f"SELECT u, f, lo + 1 AS day, 1 AS delta FROM u_spans WHERE hi - lo <= {window}",
        f"SELECT u, f, hi + {window} + 1 AS day, -1 AS delta FROM u_spans WHERE hi - lo <= {window}",
    ]
    runs = ""
    if long_spans:
        keyed = " UNION ALL ".join(
            f"SELECT u, {f} AS f, CAST({key} AS BIGINT) AS k, day FROM e WHERE {condition}"
            for f, (_, key, condition) in enumerate(_DISTINCT)
        )
        runs = f"""WITH runs AS (
            SELECT u, f, day, lag(day) OVER w AS prev, lead(day) OVER w AS nxt
            FROM (
                SELECT DISTINCT u, f, k, day
                FROM ({keyed}) SEMI JOIN (SELECT u, f, k FROM u_spans WHERE hi - lo > {window}) long USING (u, f, k)
            )
            WINDOW w AS (PARTITION BY u, f, k ORDER BY day)
        )"""
        marks += [
            f"SELECT u, f, day + 1 AS day, 1 AS delta FROM runs WHERE prev IS NULL OR day > prev + {window}",
            f"SELECT u, f, day + {window} + 1 AS day, -1 AS delta FROM runs WHERE nxt IS NULL OR nxt > day + {window}",
        ]
    return f"""
    {runs}
    SELECT u, day, {wide}
    FROM ({" UNION ALL ".join(marks)})
    GROUP BY u, day
    ORDER BY u, day
    """


_ITEM_DAILY_SQL = f"""
SELECT i, day,
    count(*) FILTER (WHERE t = {_VIEW}) AS n_views,
    count(*) FILTER (WHERE t = {_CART}) AS n_carts,
    count(*) FILTER (WHERE t = {_PURCHASE}) AS n_purchases,
    arg_max(price, {_POS}) FILTER (WHERE price IS NOT NULL) AS last_price,
    arg_max(c, {_POS}) FILTER (WHERE c IS NOT NULL) AS last_category
FROM e
GROUP BY i, day
ORDER BY i, day
"""


def _load_events(con: duckdb.DuckDBPyConnection, events: pa.Table) -> np.ndarray:
    """Table `e`: a slim copy of the events (type codes, session codes, epoch microseconds, UTC day numbers).

    Returns the distinct event days, sorted.
    """
    ts = pc.cast(pc.cast(events["event_timestamp"], _TS), pa.int64()).to_numpy()
    day = np.floor_divide(ts, US_PER_DAY)
    slim = pa.table(
        {
            "u": events["user_id"],
            "i": events["item_id"],
            "s": pc.dictionary_encode(events["session_id"].combine_chunks()).indices,
            "t": pc.cast(pc.index_in(events["event_type"], value_set=pa.array(EVENT_TYPES)), pa.int8()),
            "ts": ts,
            "day": pa.array(day, pa.int32()),
            "price": events["price"],
            "c": events["category_id"],
            "eid": events["event_id"],
        }
    )
    con.register("ev_arrow", slim)
    con.execute("CREATE TEMP TABLE e AS SELECT * FROM ev_arrow")
    con.unregister("ev_arrow")
    return np.unique(day)


def _snapshot_days(event_days: np.ndarray, snapshots: Sequence[date] | None) -> np.ndarray:
    """Requested snapshot days as sorted day numbers; by default every day from first event day + 1 to last + 1."""
    if snapshots is None:
        return np.arange(event_days[0] + 1, event_days[-1] + 2, dtype=np.int64)
    days = [(d.astimezone(UTC).date() if isinstance(d, datetime) else d) - _EPOCH for d in snapshots]
    return np.unique(np.array([d.days for d in days], dtype=np.int64))


def _numpy(table: pa.Table, name: str, dtype: type[np.generic] | None = None, fill: float = 0) -> np.ndarray:
    column = pc.fill_null(table[name], fill) if table[name].null_count else table[name]
    values: np.ndarray = column.to_numpy()
    return values.astype(dtype) if dtype is not None else values


class _SnapshotGrid:
    """The snapshot rows of one entity kind, located in the entity's per-day rows (sorted by entity, day).

    Activity on day d covers the snapshots d+1 .. min(d+window, next active day), so every snapshot row knows its
    entity's latest active day before it (`src`), and rows come out sorted by (entity, day) with no duplicates.
    Window sums are differences of prefix sums over the day rows, located with `searchsorted` on a composite
    (entity rank, day) key.
    """

    def __init__(self, entity: np.ndarray, day: np.ndarray, snapshots: np.ndarray, window: int) -> None:
        n = len(day)
        first = np.ones(n, dtype=bool)
        first[1:] = entity[1:] != entity[:-1]
        last = np.ones(n, dtype=bool)
        last[:-1] = first[1:]
        self._rank = np.cumsum(first) - 1
        self._first_row = np.flatnonzero(first)
        self._entities = entity[first]
        self._base = int(min(day.min(), snapshots.min())) - 2 * window - 2
        self._span = int(max(day.max(), snapshots.max())) + 2 * window + 2 - self._base
        self._key = self._rank * self._span + (day - self._base)

        next_day = np.where(last, day + window, np.roll(day, -1))
        lo = np.searchsorted(snapshots, day + 1, side="left")
        hi = np.searchsorted(snapshots, np.minimum(day + window, next_day), side="right")
        count = np.maximum(hi - lo, 0)
        self.src = np.repeat(np.arange(n), count)
        offset = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        self.day = snapshots[np.repeat(lo, count) + offset]
        self.entity = entity[self.src]
        self._snap_rank = self._rank[self.src]
        self._snap_key = self._snap_rank * self._span + (self.day - self._base)
        self._starts: dict[int, np.ndarray] = {}
        self._end = self.src + 1

    def window_sum(self, values: np.ndarray, days: int) -> np.ndarray:
        """Sum of a per-day column over [D-days, D) for every snapshot D."""
        if days not in self._starts:
            self._starts[days] = np.searchsorted(self._key, self._snap_key - days, "left")
        # floats: extended precision, so the difference of two large prefix sums keeps the window's digits
        wide = np.longdouble if np.issubdtype(values.dtype, np.floating) else values.dtype
        cum = np.zeros(len(values) + 1, dtype=wide)
        np.cumsum(values, dtype=wide, out=cum[1:])
        result: np.ndarray = (np.take(cum, self._end) - np.take(cum, self._starts[days])).astype(values.dtype)
        return result

    def at_latest(self, values: np.ndarray) -> np.ndarray:
        """The value of the entity's latest active day before D."""
        return np.take(values, self.src)

    def latest_valid(self, valid: np.ndarray) -> np.ndarray:
        """Row of the entity's latest day before D where `valid` holds, or -1 (all history, not just the window)."""
        latest = np.maximum.accumulate(np.where(valid, np.arange(len(valid)), -1))[self.src]
        return np.where(latest >= self._first_row[self._snap_rank], latest, -1)

    def running_totals(self, entity: np.ndarray, day: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """For markers sorted by (entity, day): a function from their deltas to, per snapshot D, their sum over the
        entity's markers at days <= D."""
        key = np.searchsorted(self._entities, entity) * self._span + (day - self._base)
        upto = np.searchsorted(key, self._snap_key, "right")
        begin = np.searchsorted(key, self._snap_rank * self._span, "left")

        def total(deltas: np.ndarray) -> np.ndarray:
            cum = np.zeros(len(deltas) + 1, dtype=deltas.dtype)
            np.cumsum(deltas, out=cum[1:])
            result: np.ndarray = np.take(cum, upto) - np.take(cum, begin)
            return result

        return total


def _stable_argsort(values: np.ndarray) -> np.ndarray:
    """Stable argsort; integers spanning less than 2**16 are narrowed so NumPy uses its radix sort."""
    if np.issubdtype(values.dtype, np.integer) and len(values):
        low = values.min()
        if int(values.max()) - int(low) < 2**16:
            values = (values - low).astype(np.uint16)
    result: np.ndarray = np.argsort(values, kind="stable")
    return result


def _ntiles(day: np.ndarray, measures: Sequence[np.ndarray], buckets: int = RFM_BUCKETS) -> list[np.ndarray]:
    """SQL `NTILE(buckets) OVER (PARTITION BY day ORDER BY measure, entity)` of each measure, for rows sorted by
    entity (1 = lowest). One snapshot day at a time (few days, many rows each): stable sorts keep the entity order
    among ties, and small sorts stay in cache."""
    n = len(day)
    outs = [np.empty(n, dtype=np.int64) for _ in measures]
    if n == 0:
        return outs
    by_day = _stable_argsort(day)
    for rows in np.split(by_day, np.flatnonzero(np.diff(day[by_day])) + 1):
        size = len(rows)
        small, extra = divmod(size, buckets)  # the first `extra` buckets hold one more row
        position = np.arange(size)
        big_rows = extra * (small + 1)
        tile = np.where(position < big_rows, position // (small + 1), extra + (position - big_rows) // max(small, 1))
        for measure, out in zip(measures, outs, strict=True):
            out[rows[_stable_argsort(measure[rows])]] = tile + 1
    return outs


def _ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    """num / den, and `empty` where den is 0."""
    safe = np.where(den > 0, den, 1)
    return np.where(den > 0, num / safe, empty)


def _user_features(con: duckdb.DuckDBPyConnection, snapshots: np.ndarray) -> dict[str, np.ndarray]:
    con.execute(_USER_DAILY_SQL)
    daily = con.sql(_USER_STAGE_SQL).to_arrow_table()
    con.execute(_user_spans_sql())
    long_spans = con.sql(f"SELECT count(*) FROM u_spans WHERE hi - lo > {USER_WINDOW_DAYS}").fetchall()[0][0] > 0
    marks = con.sql(_marks_sql(USER_WINDOW_DAYS, long_spans)).to_arrow_table()
    grid = _SnapshotGrid(_numpy(daily, "u"), _numpy(daily, "day", np.int64), snapshots, USER_WINDOW_DAYS)
    out: dict[str, np.ndarray] = {USER: grid.entity, "day": grid.day}
    for name in _COUNTED:
        counts = _numpy(daily, f"n_{name}", np.int64)
        for days in (1, 7, 30):
            out[f"{name}_{days}d"] = grid.window_sum(counts, days)
    running_total = grid.running_totals(_numpy(marks, "u"), _numpy(marks, "day", np.int64))
    distinct = {c: running_total(_numpy(marks, c, np.int64)) for c, _, _ in _DISTINCT}
    for column in ("distinct_items_30d", "distinct_categories_30d", "sessions_30d"):
        out[column] = distinct[column]
    out["conversion_rate_30d"] = _ratio(out["purchases_30d"], out["sessions_30d"], 0.0)
    abandoned = distinct["cart_or_purchase_sessions"] - distinct["purchase_sessions"]
    out["cart_abandonment_rate_30d"] = _ratio(abandoned, distinct["cart_sessions"], 0.0)
    events_30d, viewed_n, bought_n = (grid.window_sum(_numpy(daily, c, np.int64), 30) for c in _SUMMED_COUNTS)
    viewed_sum, bought_sum = (grid.window_sum(_numpy(daily, c, np.float64), 30) for c in ("viewed_sum", "bought_sum"))
    out["avg_viewed_price_30d"] = _ratio(viewed_sum, viewed_n, np.nan)
    out["avg_purchased_price_30d"] = _ratio(bought_sum, bought_n, np.nan)

    snapshot_us = grid.day * US_PER_DAY
    purchase_ts = _numpy(daily, "last_purchase_ts", np.int64)
    latest_purchase = grid.latest_valid(daily["last_purchase_ts"].is_valid().to_numpy(zero_copy_only=False))
    since_purchase = (snapshot_us - purchase_ts[np.maximum(latest_purchase, 0)]) / US_PER_DAY
    out["days_since_last_purchase"] = np.where(latest_purchase >= 0, since_purchase, np.nan)
    out["seconds_since_last_event"] = (snapshot_us - grid.at_latest(_numpy(daily, "last_ts", np.int64))) / 1e6

    # RFM quintiles among the users of each snapshot; ties broken by user_id
    out["rfm_recency"], out["rfm_frequency"], out["rfm_monetary"] = _ntiles(
        grid.day, [-out["seconds_since_last_event"], events_30d, bought_sum]
    )
    out["journey_stage"] = grid.at_latest(_numpy(daily, "stage", np.int64))
    return out


def _item_features(con: duckdb.DuckDBPyConnection, snapshots: np.ndarray) -> dict[str, np.ndarray]:
    daily = con.sql(_ITEM_DAILY_SQL).to_arrow_table()
    grid = _SnapshotGrid(_numpy(daily, "i"), _numpy(daily, "day", np.int64), snapshots, ITEM_WINDOW_DAYS)
    views, carts, purchases = (
        grid.window_sum(_numpy(daily, f"n_{name}", np.int64), ITEM_WINDOW_DAYS)
        for name in ("views", "carts", "purchases")
    )
    price_row = grid.latest_valid(daily["last_price"].is_valid().to_numpy(zero_copy_only=False))
    category_row = grid.latest_valid(daily["last_category"].is_valid().to_numpy(zero_copy_only=False))
    prices = _numpy(daily, "last_price", np.float64)
    categories = _numpy(daily, "last_category", np.int64)
    return {
        ITEM: grid.entity,
        "day": grid.day,
        "item_views_7d": views,
        "item_carts_7d": carts,
        "item_purchases_7d": purchases,
        "view_to_cart_rate_7d": _ratio(carts, views, 0.0),
        "cart_to_purchase_rate_7d": _ratio(purchases, carts, 0.0),
        "item_price": np.where(price_row >= 0, prices[np.maximum(price_row, 0)], np.nan),
        "item_category_id": np.where(category_row >= 0, categories[np.maximum(category_row, 0)], -1),
    }


def _table(
    columns: dict[str, np.ndarray] | None, key: str, features: dict[str, FeatureType], created: datetime | None
) -> pa.Table:
    """Contract column order and types: key, event_timestamp, created, then the view's features."""
    stamp = (created or datetime.now(UTC)).astimezone(UTC)
    fields = [pa.field(key, pa.int64()), pa.field("event_timestamp", _TS), pa.field("created", _TS)]
    schema = pa.schema(fields + [pa.field(name, _ARROW[kind]) for name, kind in features.items()])
    if columns is None or len(columns["day"]) == 0:
        return schema.empty_table()
    n = len(columns["day"])
    arrays = [
        pa.array(columns[key], pa.int64()),
        pa.array(columns["day"] * US_PER_DAY, pa.int64()).cast(_TS),
        pa.array(np.full(n, _epoch_us(stamp), dtype=np.int64)).cast(_TS),
    ]
    arrays += [pa.array(columns[name], _ARROW[kind]) for name, kind in features.items()]
    return pa.Table.from_arrays(arrays, schema=schema)


def _epoch_us(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _compute(
    events: pa.Table,
    snapshots: Sequence[date] | None,
    created: datetime | None,
    key: str,
    features: dict[str, FeatureType],
    compute: Callable[[duckdb.DuckDBPyConnection, np.ndarray], dict[str, np.ndarray]],
) -> pa.Table:
    if events.num_rows == 0 or (snapshots is not None and len(snapshots) == 0):
        return _table(None, key, features, created)
    con = duckdb.connect()
    try:
        event_days = _load_events(con, events)
        columns = compute(con, _snapshot_days(event_days, snapshots))
    finally:
        con.close()
    return _table(columns, key, features, created)


def compute_user_activity(
    events: pa.Table, snapshots: Sequence[date] | None = None, created: datetime | None = None
) -> pa.Table:
    """Daily `user_activity` snapshots from canonical events, sorted by (user_id, event_timestamp).

    `snapshots`: the days to compute (default: every day from the first event day + 1 to the last + 1);
    `created`: the `created` stamp of every row (default: now).
    """
    return _compute(events, snapshots, created, USER, USER_ACTIVITY_FEATURES, _user_features)


def compute_item_popularity(
    events: pa.Table, snapshots: Sequence[date] | None = None, created: datetime | None = None
) -> pa.Table:
    """Daily `item_popularity` snapshots: 7-day counts and rates, last price and category seen before the day."""
    return _compute(events, snapshots, created, ITEM, ITEM_POPULARITY_FEATURES, _item_features)


def build_features(dataset: str, settings: Settings, progress: Callable[[str], None] | None = None) -> dict[str, str]:
    """Compute both batch views of a stored dataset and replace their offline tables; returns view -> location."""
    say = progress or (lambda _message: None)
    say(f"reading events of dataset {dataset!r}")
    events = DatasetStore(settings.events_dir).events(dataset)
    created = datetime.now(UTC)
    tables = OfflineTables(settings)
    locations: dict[str, str] = {}
    for view, compute in ((USER_ACTIVITY, compute_user_activity), (ITEM_POPULARITY, compute_item_popularity)):
        say(f"computing {view} from {events.num_rows:,} events")
        table = compute(events, None, created)
        locations[view] = tables.write(view, table, "replace")
        say(f"wrote {table.num_rows:,} rows of {view} to {locations[view]}")
    return locations


BUILD_MANIFEST = "feature_build.json"


def record_build(settings: Settings, dataset: str, events: int) -> Path:
    """Remember which dataset the offline tables now hold: a training run on another dataset must not join them."""
    path = settings.data_dir / BUILD_MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"dataset": dataset, "events": events, "built_at": datetime.now(UTC).isoformat()}
    staging = path.with_suffix(".partial")
    staging.write_text(json.dumps(payload), encoding="utf-8")
    staging.replace(path)
    return path


def last_build(settings: Settings) -> dict[str, Any] | None:
    """What `record_build` wrote last in this data dir, or None before any build."""
    path = settings.data_dir / BUILD_MANIFEST
    if not path.exists():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded
