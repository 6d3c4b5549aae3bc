"""Incremental, idempotent, restartable materialisation (offline store -> online store).

Safety: a view's interval is recorded in the Feast registry only after its rows are written, and writes are upserts
that never replace a newer row (the stored `_ts` is compared first). A run that crashes half-way leaves the interval
unrecorded; the next run writes the same interval again and ends in the state an uninterrupted run would have.

Speed: Feast's Python engine moves ~25-80k feature values/s here (PostgreSQL `fetchall`, a ValueProto object per
value, an mmh3 hash per value). For Redis and views of scalar features this module keeps Feast's storage format
and its registry intervals, but pulls the latest row per entity in one SQL query and writes it with
`journey.stores.online_write.RedisWriter` (doubles and integers encoded column by column, both checked against
Feast's own serialiser in tests). Other views and stores use Feast's engine unchanged.

Feast, psycopg and DuckDB are imported inside the functions that use them: importing the core loads none of them.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.csv as pcsv

from journey.contracts import USER_PROFILE
from journey.errors import InvalidInputError
from journey.settings import Profile, Settings
from journey.stores.connections import postgres_params
from journey.stores.offline import OfflineTables
from journey.stores.online_write import RedisWriter, write_online

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

log = logging.getLogger(__name__)

# First run of a view: how far back to look when the registry has no interval yet.
DEFAULT_LOOKBACK = timedelta(days=3650)
PULL_WORK_MEM = "256MB"  # per materialisation query, not per server
# Views whose offline table another job writes (`journey analyze` writes user_profile and upserts it online itself):
# before that job first runs there is nothing to materialise, which is no error unless the view was asked for by name.
OPTIONAL_VIEWS = (USER_PROFILE,)


def materialize_incremental(
    store: FeatureStore, settings: Settings, end: datetime, views: Sequence[str] | None = None
) -> dict[str, Any]:
    """Materialise every online batch view (or `views`) from its last recorded end to `end`."""
    end = end.astimezone(UTC)
    available = {v.name: v for v in store.list_batch_feature_views() if v.online}
    unknown = sorted(set(views or []) - set(available))
    if unknown:
        raise InvalidInputError(
            f"unknown feature view(s) {unknown}; known: {sorted(available)}", field="view", value=unknown
        )
    stats: dict[str, Any] = {}
    for name in views or sorted(available):
        if not views and _not_written_yet(settings, name):
            log.info("skipped view without an offline table yet", extra={"view": name})
            continue
        view = available[name]
        start = last_materialized(view) or end - DEFAULT_LOOKBACK
        if start >= end:
            stats[name] = {"skipped": "up to date", "end": end.isoformat()}
            continue
        began = time.perf_counter()
        info = _materialize_view(store, settings, view, start, end)
        info.update(start=start.isoformat(), end=end.isoformat(), seconds=round(time.perf_counter() - began, 3))
        stats[name] = info
        log.info("materialised view", extra={"view": name, **info})
    return stats


def _not_written_yet(settings: Settings, view: str) -> bool:
    return view in OPTIONAL_VIEWS and not OfflineTables(settings).exists(view)


def last_materialized(view: FeatureView) -> datetime | None:
    intervals = view.materialization_intervals or []
    return max(e for _, e in intervals).astimezone(UTC) if intervals else None


def _materialize_view(
    store: FeatureStore, settings: Settings, view: FeatureView, start: datetime, end: datetime
) -> dict[str, Any]:
    redis = store.config.online_store.type == "redis"
    if settings.profile is Profile.PROD and not (redis and _scalar_only(view)):
        store.materialize(start_date=start, end_date=end, feature_views=[view.name])
        return {"engine": "feast"}
    if redis:
        written = pull_and_write(store, settings, view, start, end)
    else:
        # Feast's engine reads Parquet through Dask, which hashes list columns by pickling them (110 s for the
        # demo's session history); the newest rows come from DuckDB instead and go through Feast's online write.
        rows = pull_latest(settings, view, start, end)
        ts = pa.array(rows["event_ts_us"].to_numpy(), pa.int64()).cast(pa.timestamp("us", tz="UTC"))
        written = write_online(store, view.name, rows.append_column("event_timestamp", ts).drop(["event_ts_us"]))
    store.registry.apply_materialization(view, store.project, start, end)
    return {"engine": "journey", "entities": written, "values": written * len(view.features)}


def pull_and_write(store: FeatureStore, settings: Settings, view: FeatureView, start: datetime, end: datetime) -> int:
    """Pull key range i+1 (PostgreSQL works in its own process) while range i is written to Redis: two cores busy."""
    writer = RedisWriter(store)
    with ThreadPoolExecutor(max_workers=1) as puller:
        pulls = [puller.submit(pull_latest, settings, view, start, end, r) for r in key_ranges(settings, view, 4)]
        return sum(writer.write(view, pull.result()) for pull in pulls)


def _scalar_only(view: FeatureView) -> bool:
    """Batch views of numbers take the fast path; list-typed views (session activity) stay on Feast's engine."""
    from feast.types import Float64, Int64  # lazy: see the module docstring

    return all(f.dtype in (Int64, Float64) for f in view.features) and len(view.join_keys) == 1


# --- pull: the newest row per entity inside (start, end] ---------------------------------------------------------


def pull_latest(
    settings: Settings, view: FeatureView, start: datetime, end: datetime, keys: tuple[int, int] | None = None
) -> pa.Table:
    """Entity key, `event_ts_us` and the features, one row per entity (newest event, then newest created).

    `keys` limits a PostgreSQL pull to an inclusive range of entity keys (see `key_ranges`).
    """
    key = view.join_keys[0]
    features = [f.name for f in view.features]
    if settings.profile is Profile.PROD:
        return _pull_postgres(settings, view.name, key, features, start, end, keys)
    return _pull_parquet(settings, view.name, key, features, start, end)


def key_ranges(settings: Settings, view: FeatureView, parts: int) -> list[tuple[int, int] | None]:
    """Split an integer entity key space into `parts` inclusive ranges (min/max come from the key index)."""
    if settings.profile is not Profile.PROD or parts <= 1:
        return [None]
    key = view.join_keys[0]
    with _pg_connect(settings) as conn:
        row = conn.execute(
            f'SELECT min("{key}"), max("{key}") FROM "{settings.offline_schema}"."{view.name}"'
        ).fetchone()
    if not row or row[0] is None:
        return [None]
    low, high = int(row[0]), int(row[1])
    step = max(1, (high - low + parts) // parts)
    return [(lo, min(lo + step - 1, high)) for lo in range(low, high + 1, step)]


def _pg_connect(settings: Settings) -> Any:
    import psycopg  # lazy: see the module docstring

    params = postgres_params(settings.postgres_dsn)
    return psycopg.connect(
        host=params["host"],
        port=params["port"],
        dbname=params["database"],
        user=params["user"],
        password=params["password"] or None,
        sslmode=params["sslmode"],
        connect_timeout=5,
    )


def _pull_parquet(
    settings: Settings, view: str, key: str, features: list[str], start: datetime, end: datetime
) -> pa.Table:
    import duckdb  # lazy: see the module docstring

    path = settings.offline_dir / f"{view}.parquet"
    cols = ", ".join(f'"{c}"' for c in features)
    sql = f"""
        SELECT "{key}", epoch_us(event_timestamp) AS event_ts_us, {cols}
        FROM read_parquet(?)
        WHERE event_timestamp > ? AND event_timestamp <= ?
        QUALIFY row_number() OVER (PARTITION BY "{key}" ORDER BY event_timestamp DESC, created DESC) = 1
    """
    with duckdb.connect() as con:
        return con.sql(sql, params=[str(path), start, end]).to_arrow_table()


def _pull_postgres(
    settings: Settings,
    view: str,
    key: str,
    features: list[str],
    start: datetime,
    end: datetime,
    keys: tuple[int, int] | None = None,
) -> pa.Table:
    """One round trip: PostgreSQL renders the whole result as a single CSV text value.

    COPY TO STDOUT (and fetchall) hand rows to Python one at a time (~50 us each here); a single aggregated value
    moves 20k rows in milliseconds. Doubles print with round-trip precision (PostgreSQL >= 12).
    """
    names = [key, "event_ts_us", *features]
    feature_cells = ", ".join(f"coalesce(\"{c}\"::text, '')" for c in features)
    columns = ", ".join(f'"{c}"' for c in features)
    key_filter = f'"{key}" BETWEEN %s AND %s'
    query = f"""
        SELECT string_agg(concat_ws(',', "{key}"::text, event_ts_us::text, {feature_cells}), E'\\n')
        FROM (
            SELECT DISTINCT ON ("{key}") "{key}",
                   (extract(epoch FROM event_timestamp) * 1000000)::bigint AS event_ts_us,
                   {columns}
            FROM "{settings.offline_schema}"."{view}"
            WHERE event_timestamp > %s AND event_timestamp <= %s {"AND " + key_filter if keys else ""}
            ORDER BY "{key}", event_timestamp DESC, created DESC
        ) latest
    """
    args: tuple[Any, ...] = (start, end, *keys) if keys else (start, end)
    with _pg_connect(settings) as conn:
        # the DISTINCT ON sort spills to disk at the default 4 MB work_mem (~1.5x slower): raise it for this query
        conn.execute(f"SET LOCAL work_mem = '{PULL_WORK_MEM}'")
        row = conn.execute(query, args).fetchone()
    text = (row[0] if row else None) or ""
    types = {key: pa.int64(), "event_ts_us": pa.int64(), **{f: pa.float64() for f in features}}
    if not text:
        return pa.table({n: pa.array([], types[n]) for n in names})
    return pcsv.read_csv(
        io.BytesIO(text.encode()),
        read_options=pcsv.ReadOptions(column_names=names),
        convert_options=pcsv.ConvertOptions(column_types=types),
    )
