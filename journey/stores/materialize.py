"""Incremental, idempotent, restartable materialisation (offline store -> online store).

Safety: a view's interval is recorded in the Feast registry only after its rows are written, and writes are upserts
that never replace a newer row (the stored `_ts` is compared first). A run that crashes half-way leaves the interval
unrecorded; the next run writes the same interval again and ends in the state an uninterrupted run would have.

Speed: Feast's Python engine moves ~25-80k feature values/s here (PostgreSQL `fetchall`, a ValueProto object per
value, an mmh3 hash per value). For Redis and views of scalar features this module keeps Feast's storage format
(key = serialised entity key + project, field = mmh3("<view>:<feature>"), value = serialised ValueProto, `_ts:<view>`
= serialised Timestamp) and its registry intervals, but pulls the latest row per entity in one SQL query and encodes
values column by column (doubles as fixed 9-byte records, integers through a cache of their distinct values, both
checked against Feast's own serialiser in tests). Other views and stores use Feast's engine unchanged.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from journey.contracts import USER_PROFILE
from journey.errors import InvalidInputError
from journey.settings import Profile, Settings
from journey.stores.connections import postgres_params

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

log = logging.getLogger(__name__)

# First run of a view: how far back to look when the registry has no interval yet.
DEFAULT_LOOKBACK = timedelta(days=3650)
PULL_WORK_MEM = "256MB"  # per materialisation query, not per server
WRITE_BATCH = 2_000  # entities per Redis pipeline: bounded memory, few round trips
_DOUBLE_TAG = np.uint8(0x29)  # ValueProto.double_val: field 5, wire type 1 (64-bit)
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


def write_online(store: FeatureStore, view_name: str, rows: pa.Table) -> int:
    """Upsert rows (entity key, `event_timestamp`, features) into the online store in Feast's format.

    Redis goes through `RedisWriter` (no registry round trips: Feast's `push` lists every feature service in the
    SQL registry on each call, ~130 ms here); other stores through Feast's `write_to_online_store`.
    """
    view = store.get_feature_view(view_name, allow_registry_cache=True)
    if store.config.online_store.type == "redis":
        ts = pc.cast(rows["event_timestamp"], pa.int64())
        return RedisWriter(store).write(view, rows.append_column("event_ts_us", ts))
    if "created" not in rows.column_names:
        rows = rows.append_column("created", rows["event_timestamp"])
    store.write_to_online_store(view_name, rows.to_pandas())
    return int(rows.num_rows)


def _not_written_yet(settings: Settings, view: str) -> bool:
    from journey.stores.offline import OfflineTables

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
    from feast.types import Float64, Int64

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
    import psycopg

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
    import duckdb

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


# --- encode + write (Feast's Redis layout) -----------------------------------------------------------------------


def encode_doubles(values: np.ndarray, head: bytes = b"") -> list[bytes]:
    """`head` + RESP bulk of ValueProto(double_val=v) per value; NaN -> an empty value (Feast's encoding of NaN).

    Doubles are fixed-width (tag 0x29 + 8 bytes little-endian), so every record is built in one numpy pass.
    """
    values = np.ascontiguousarray(values, dtype="<f8")
    prefix = np.frombuffer(head + b"$9\r\n" + bytes([_DOUBLE_TAG]), dtype=np.uint8)
    width = prefix.size + 8 + 2
    records = np.empty((values.size, width), dtype=np.uint8)
    records[:, : prefix.size] = prefix
    records[:, prefix.size : prefix.size + 8] = values.view(np.uint8).reshape(-1, 8)
    records[:, -2:] = np.frombuffer(b"\r\n", dtype=np.uint8)
    blob = records.tobytes()
    out = [blob[i : i + width] for i in range(0, len(blob), width)]
    empty = head + b"$0\r\n\r\n"
    for i in np.flatnonzero(np.isnan(values)):
        out[i] = empty
    return out


def encode_with(encode_one: Callable[[Any], bytes], values: np.ndarray) -> list[bytes]:
    """Encode each distinct value once (counts and ids repeat a lot), then fan out."""
    uniques, inverse = np.unique(values, return_inverse=True)
    table = np.array([encode_one(v) for v in uniques.tolist()], dtype=object)
    return list(table[inverse])


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


def framed_column(column: pa.ChunkedArray | pa.Array, dtype: Any, head: bytes = b"") -> list[bytes]:
    """`head` + RESP bulk string of each value's serialised ValueProto (Feast's online encoding)."""
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto
    from feast.type_map import python_values_to_proto_values
    from feast.types import Float64, Int64

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if dtype == Float64:
        return encode_doubles(np.asarray(pc.fill_null(pc.cast(arr, pa.float64()), np.nan).to_numpy()), head)
    if dtype == Int64:
        ints = np.asarray(pc.fill_null(pc.cast(arr, pa.int64()), 0).to_numpy())
        out = encode_with(lambda v: head + _bulk(ValueProto(int64_val=int(v)).SerializeToString()), ints)
        for i in np.flatnonzero(np.asarray(arr.is_null().to_numpy(zero_copy_only=False))):
            out[i] = head + b"$0\r\n\r\n"
        return out
    # lists and other types: Feast's own converter, value by value (real-time pushes write few rows)
    protos = python_values_to_proto_values(arr.to_pylist(), dtype.to_value_type())
    return [head + _bulk(p.SerializeToString()) for p in protos]


def _timestamp_proto(us: int) -> bytes:
    from google.protobuf.timestamp_pb2 import Timestamp

    encoded: bytes = Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000).SerializeToString()
    return encoded


def _command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(_bulk(p) for p in parts)


class RedisWriter:
    """Upserts rows into Feast's Redis layout, skipping entities whose stored row is newer.

    Commands are packed as RESP by hand and sent in one write per batch: redis-py's pipeline spends ~10 us of Python
    per command on packing and bookkeeping, which capped throughput near 400k values/s here.
    """

    def __init__(self, store: FeatureStore) -> None:
        from feast.infra.online_stores.helpers import _mmh3

        self.store = store
        self.config = store.config
        self.client = store._get_provider().online_store._get_client(self.config.online_store)  # type: ignore[attr-defined]
        self._mmh3 = _mmh3

    def write(self, view: FeatureView, rows: pa.Table) -> int:
        if rows.num_rows == 0:
            return 0
        key = view.join_keys[0]
        ts_field = f"_ts:{view.name}".encode()
        heads = [_bulk(self._mmh3(f"{view.name}:{f.name}")) for f in view.features]
        columns = [framed_column(rows[f.name], f.dtype, head) for f, head in zip(view.features, heads, strict=True)]
        ts_us = np.asarray(rows["event_ts_us"].to_numpy())
        columns.append(encode_with(lambda us: _bulk(ts_field) + _bulk(_timestamp_proto(int(us))), ts_us))
        keys = self._entity_keys(key, rows[key])
        command_head = b"*%d\r\n$4\r\nHSET\r\n" % (2 + 2 * len(columns))
        ttl = self.config.online_store.key_ttl_seconds
        written = 0
        for begin in range(0, rows.num_rows, WRITE_BATCH):
            stop = min(begin + WRITE_BATCH, rows.num_rows)
            newer = self._stored_is_newer(keys[begin:stop], ts_field, ts_us[begin:stop])
            commands: list[bytes] = []
            for i in range(begin, stop):
                if newer[i - begin]:
                    continue
                commands.append(command_head + _bulk(keys[i]) + b"".join([c[i] for c in columns]))
                if ttl:
                    commands.append(_command(b"EXPIRE", keys[i], str(ttl).encode()))
                written += 1
            self._send(commands)
        return written

    def _send(self, commands: list[bytes]) -> list[Any]:
        """One write of pre-encoded RESP commands, then one reply read each (errors raise like redis-py's)."""
        if not commands:
            return []
        connection = self.client.connection_pool.get_connection()
        try:
            connection.send_packed_command([b"".join(commands)])
            return [connection.read_response() for _ in commands]
        finally:
            self.client.connection_pool.release(connection)

    def _entity_keys(self, join_key: str, values: pa.ChunkedArray) -> list[bytes]:
        """Feast's serialised entity key + project per value; int64 keys are built in one numpy pass."""
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value as ValueProto

        project = self.config.project.encode()
        version = self.config.entity_key_serialization_version

        def feast_key(v: Any) -> bytes:
            field = "string_val" if isinstance(v, str) else "int64_val"
            proto = EntityKey(join_keys=[join_key], entity_values=[ValueProto(**{field: v})])
            return serialize_entity_key(proto, entity_key_serialization_version=version) + project

        if not pa.types.is_integer(values.type) or len(values) < 2:
            return [feast_key(v) for v in values.to_pylist()]
        # Feast's layout ends with the 8 little-endian value bytes before the project: derive the prefix, check it
        zero = feast_key(0)
        prefix = zero[: len(zero) - len(project) - 8]
        ints = np.asarray(values.combine_chunks().to_numpy(), dtype="<i8")
        raw = ints.view(np.uint8).reshape(-1, 8)
        keys = [prefix + row.tobytes() + project for row in raw]
        if keys[0] != feast_key(int(ints[0])) or keys[-1] != feast_key(int(ints[-1])):
            return [feast_key(int(v)) for v in ints]  # layout changed in a Feast release: stay correct
        return keys

    def _stored_is_newer(self, keys: list[bytes], ts_field: bytes, new_us: np.ndarray) -> list[bool]:
        from google.protobuf.timestamp_pb2 import Timestamp

        stored = self._send([_command(b"HGET", k, ts_field) for k in keys])
        out = []
        for raw, new in zip(stored, new_us.tolist(), strict=True):
            if not raw:
                out.append(False)
                continue
            ts = Timestamp.FromString(raw)
            out.append(ts.seconds * 1_000_000 + ts.nanos // 1000 > new)
        return out
