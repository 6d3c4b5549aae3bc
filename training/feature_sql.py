"""The DuckDB half of the batch features: one hash aggregation per (entity, day), sorted by (entity, day).

`training/features.py` turns these per-day rows into daily snapshots with NumPy (`feature_windows.py`). DuckDB,
over the registered Arrow table (`load_events`), does what hash aggregation is good at:

- one row per (entity, day) with counts, price sums, the last purchase and the day's last event with its journey
  stage (`USER_DAILY_SQL`, `USER_STAGE_SQL`, `ITEM_DAILY_SQL`), and the first/last day of every
  (user, item|category|session) key (`user_spans_sql`);
- distinct counts per sliding window become run markers (`marks_sql`): a key seen on day d counts for snapshots
  d+1 .. d+30, and sightings at most 30 days apart merge into one run, which puts +1 at its first day + 1 and -1 at
  its last day + 31. The running sum of these markers at D is exactly the number of distinct keys in [D-30d, D),
  with no (user, day, item) x snapshot join. Keys seen within 30 days of their first sighting (nearly all) are one
  run straight from the aggregate (`user_spans_sql`); only longer-lived keys have their days sorted to find the
  gaps.

Events tied on time are ordered by `event_id` wherever order matters (last event, last price, journey stage).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from journey.contracts import STAGES
from journey.events import EVENT_TYPES

US_PER_DAY = 86_400_000_000
TS = pa.timestamp("us", tz="UTC")

# event_type codes inside the SQL (positions in EVENT_TYPES) and stage ordinals (positions in STAGES)
_VIEW, _CART, _REMOVE, _PURCHASE = (
    EVENT_TYPES.index(t) for t in ("view", "add_to_cart", "remove_from_cart", "purchase")
)
_DISCOVERY, _CONSIDERATION, _PURCHASE_STAGE, _POST_PURCHASE = (
    STAGES.index(s) for s in ("discovery", "consideration", "purchase", "post_purchase")
)
COUNTED = {"views": _VIEW, "carts": _CART, "removes": _REMOVE, "purchases": _PURCHASE}
SUMMED_COUNTS = ("n_events", "viewed_n", "bought_n")
_POS = "{'ts': ts, 'eid': eid}"  # event order: time, then event_id for ties

# Distinct counts of user_activity: (column, counted key, which events count); the last three are helpers of the
# abandonment rate. Each key's first and last day come from one hash aggregate per key column.
DISTINCT = (
    ("distinct_items_30d", "i", "TRUE"),
    ("distinct_categories_30d", "c", "c IS NOT NULL"),
    ("sessions_30d", "s", "TRUE"),
    ("cart_sessions", "s", f"t = {_CART}"),
    ("purchase_sessions", "s", f"t = {_PURCHASE}"),
    ("cart_or_purchase_sessions", "s", f"t IN ({_CART}, {_PURCHASE})"),
)


def user_spans_sql() -> str:
    """Table `u_spans(u, f, k, lo, hi)`: first and last day each key of each distinct-count family was seen."""
    parts = []
    for key in dict.fromkeys(k for _, k, _ in DISTINCT):
        families = [(f, condition) for f, (_, k, condition) in enumerate(DISTINCT) if k == key]
        bounds = ", ".join(
            f"min(day) FILTER (WHERE {cond}) AS lo{f}, max(day) FILTER (WHERE {cond}) AS hi{f}" for f, cond in families
        )
        spans = f"(SELECT u, {key} AS k, {bounds} FROM e GROUP BY u, {key})"
        parts += [
            f"SELECT u, {f} AS f, CAST(k AS BIGINT) AS k, lo{f} AS lo, hi{f} AS hi FROM {spans} WHERE lo{f} IS NOT NULL"
            for f, _ in families
        ]
    return f"CREATE TEMP TABLE u_spans AS {' UNION ALL '.join(parts)}"


USER_DAILY_SQL = f"""
CREATE TEMP TABLE u_daily AS
SELECT u, day,
    {", ".join(f"count(*) FILTER (WHERE t = {code}) AS n_{name}" for name, code in COUNTED.items())},
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
USER_STAGE_SQL = f"""
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


def marks_sql(window: int, long_spans: bool) -> str:
    """Run markers of every distinct-count family per (u, day): +1 where a run starts counting, -1 after it ends.

    A key whose sightings span at most `window` days forms one run [first day, last day], straight from `u_spans`;
    only keys with a longer span (`long_spans`) need their days sorted to find the gaps between runs.
    """
    wide = ", ".join(
        f"CAST(coalesce(sum(delta) FILTER (WHERE f = {f}), 0) AS BIGINT) AS {column}"
        for f, (column, _, _) in enumerate(DISTINCT)
    )
    marks = [
        f"SELECT u, f, lo + 1 AS day, 1 AS delta FROM u_spans WHERE hi - lo <= {window}",
        f"SELECT u, f, hi + {window} + 1 AS day, -1 AS delta FROM u_spans WHERE hi - lo <= {window}",
    ]
    runs = ""
    if long_spans:
        keyed = " UNION ALL ".join(
            f"SELECT u, {f} AS f, CAST({key} AS BIGINT) AS k, day FROM e WHERE {condition}"
            for f, (_, key, condition) in enumerate(DISTINCT)
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


ITEM_DAILY_SQL = f"""
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


def load_events(con: duckdb.DuckDBPyConnection, events: pa.Table) -> np.ndarray:
    """Table `e`: a slim copy of the events (type codes, session codes, epoch microseconds, UTC day numbers).

    Returns the distinct event days, sorted.
    """
    ts = pc.cast(pc.cast(events["event_timestamp"], TS), pa.int64()).to_numpy()
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
