"""Online feature reads on Redis: the lean reader vs a raw redis-py floor and vs Feast's `get_online_features`.

Goals (serving issue): 1 user x purchase_propensity_v1 within 1.5x the raw floor and p99 <= 1 ms; 1 user x 100
items p99 <= 10 ms. Runs against the real Redis + PostgreSQL of the prod profile in a throw-away Feast project,
populated with `write_to_online_store` and removed at the end (online keys, registry rows, offline schema).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from benchmarks.harness import Case, Goal, Result, interleaved, with_ratio
from journey import contracts as c
from journey.settings import Settings, get_settings

if TYPE_CHECKING:
    from feast import FeatureStore

    from serving.features import OnlineFeatureReader

CASE_NAME = "online_features"
REQUEST_TS = 1_795_000_000


@contextlib.contextmanager
def bench_store(users: int, items: int) -> Iterator[FeatureStore]:
    """A prod-profile project `journey_bench_<pid>` with `users` users/sessions and `items` items online."""
    from journey.stores.feature_store import apply, open_store

    project = f"journey_bench_{os.getpid()}"
    env = {"JOURNEY_PROFILE": "prod", "JOURNEY_FEAST_PROJECT": project, "JOURNEY_OFFLINE_SCHEMA": project}
    env["JOURNEY_ADMIN_TOKEN"] = os.environ.get("JOURNEY_ADMIN_TOKEN") or "bench-only-token"
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the feature repo's modules read get_settings(), not the settings passed to apply
    clear_settings_cache()
    settings = Settings()
    store: FeatureStore | None = None
    try:
        apply(settings)
        store = open_store(settings)
        _populate(store, users, items)
        yield store
    finally:
        if store is not None:
            _drop_project(store, settings)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        clear_settings_cache()


def clear_settings_cache() -> None:
    """`get_settings.cache_clear()`, typed loosely: get_settings is being reworked (an override context)."""
    cast(Any, get_settings).cache_clear()


def _populate(store: FeatureStore, users: int, items: int) -> None:
    import pandas as pd

    rng = np.random.default_rng(7)
    now = datetime.now(UTC)

    def frame(key: str, keys: list[Any], features: dict[str, c.FeatureType]) -> pd.DataFrame:
        n = len(keys)
        data: dict[str, Any] = {key: keys, c.SNAPSHOT_TIMESTAMP: [now] * n, c.CREATED_TIMESTAMP: [now] * n}
        for name, kind in features.items():
            if kind == "int64":
                data[name] = rng.integers(0, 50, n)
            elif kind == "float64":  # some NaN, as the batch pipeline writes for "unknown"
                data[name] = np.where(rng.random(n) < 0.1, np.nan, rng.random(n) * 100)
            elif kind == "int64_list":
                data[name] = [list(map(int, rng.integers(0, items, 5))) for _ in range(n)]
            else:
                data[name] = [["view", "add_to_cart"]] * n
        return pd.DataFrame(data)

    store.write_to_online_store(c.USER_ACTIVITY, frame(c.USER, list(range(users)), c.USER_ACTIVITY_FEATURES))
    store.write_to_online_store(c.ITEM_POPULARITY, frame(c.ITEM, list(range(items)), c.ITEM_POPULARITY_FEATURES))
    sessions = frame(c.SESSION, [f"s{u}" for u in range(users)], c.SESSION_ACTIVITY_FEATURES)
    sessions[c.USER] = np.arange(users)
    store.write_to_online_store(c.SESSION_ACTIVITY, sessions)


def _drop_project(store: FeatureStore, settings: Settings) -> None:
    """Remove what the project left: Redis keys, registry rows, offline schema.

    Not `store.teardown()`: in 0.67 it deletes EVERY project of the (shared) SQL registry. `delete_project` keeps
    `feature_view_version_history` rows, which make the next apply of the same project name fail.
    """
    import psycopg
    from sqlalchemy.engine import make_url

    project = settings.feast_project
    store._get_provider().teardown_infra(project, store.list_feature_views(), store.list_entities())
    store.registry.delete_project(project)
    dsn = make_url(settings.postgres_dsn).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM feature_view_version_history WHERE project_id = %s", (project,))
        conn.execute(f'DROP SCHEMA IF EXISTS "{settings.offline_schema}" CASCADE')


def raw_floor(store: FeatureStore, service: str) -> Callable[[list[bytes]], list[Any]]:
    """Plain redis-py: HMGET of pre-built keys in one pipeline, every value parsed and its oneof read."""
    import redis
    from feast.infra.online_stores.helpers import _mmh3
    from feast.protos.feast.types.Value_pb2 import Value

    fields = []
    stored = {view.name for view in store.list_feature_views()}  # on-demand views and the request source: no key
    for projection in store.get_feature_service(service).feature_view_projections:
        if projection.name in stored:
            fields.append([_mmh3(f"{projection.name}:{f.name}") for f in projection.features])
            fields[-1].append(f"_ts:{projection.name}".encode())
    client = redis.Redis.from_url(get_settings().redis_url)
    parse = Value.FromString

    def read(keys: list[bytes]) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for key, view_fields in zip(keys, fields, strict=True):
            pipe.hmget(key, view_fields)
        out = []
        for reply in pipe.execute():
            for raw in reply[:-1]:
                if raw is not None:
                    value = parse(raw)
                    which = value.WhichOneof("val")
                    out.append(None if which is None else getattr(value, which))
        return out

    return read


def redis_keys(store: FeatureStore, user: int, item: int, session: str) -> list[bytes]:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    keys = [(c.USER, Value(int64_val=user)), (c.ITEM, Value(int64_val=item)), (c.SESSION, Value(string_val=session))]
    return [
        serialize_entity_key(EntityKey(join_keys=[k], entity_values=[v]), 3) + store.project.encode() for k, v in keys
    ]


def per_call(fns: dict[str, Callable[[int], object]], calls: int) -> dict[str, list[float]]:
    """`interleaved`, where call k of every function reads request k: each repetition reads an entity drawn afresh,
    and within one repetition all of them read the same entity (so they compare on the same work)."""

    def numbered(fn: Callable[[int], object]) -> Callable[[], object]:
        requests = iter(range(calls + 1))  # + the warm-up call
        return lambda: fn(next(requests))

    return interleaved({name: numbered(fn) for name, fn in fns.items()}, repetitions=calls, warmup=1)


@dataclass(frozen=True)
class Requests:
    """What the reads ask for, all drawn up front from one seeded generator (outside every timing)."""

    picks: list[tuple[int, int]]  # (user, item) of each single read: call k (k = 0 is the warm-up) reads pick k
    rows: list[dict[str, Any]]  # the same as entity rows
    batches: list[list[dict[str, Any]]]  # 1 user x 100 items: a different batch for every lean call


def _requests(users: int, items: int, calls: int, batches: int) -> Requests:
    rng = np.random.default_rng(11)
    picks = list(
        zip(rng.integers(0, users, calls + 1).tolist(), rng.integers(0, items, calls + 1).tolist(), strict=True)
    )
    rows = [
        {
            c.USER: u,
            c.ITEM: i,
            c.SESSION: f"s{u}",
            "candidate_price": 19.5,
            "request_ts": REQUEST_TS,
            "candidate_item_id": i,
        }
        for u, i in picks
    ]
    hundred = [
        [{**rows[b % len(rows)], c.ITEM: i, "candidate_item_id": i} for i in rng.integers(0, items, 100).tolist()]
        for b in range(batches)
    ]
    return Requests(picks, rows, hundred)


def _read_batches(
    store: FeatureStore, reader: OnlineFeatureReader, batches: list[list[dict[str, Any]]], lean_per_round: int
) -> tuple[list[float], list[float]]:
    """Seconds per lean and per Feast call of 1 user x 100 items. Feast is ~10x slower here: one Feast call per
    `lean_per_round` lean ones; each lean call reads a batch of its own, Feast reads the first batch of its round."""
    service = store.get_feature_service(c.PURCHASE_PROPENSITY_V1)
    lean_batch, feast_batch = [], []
    for first in range(0, len(batches), lean_per_round):
        start = time.perf_counter()
        store.get_online_features(features=service, entity_rows=batches[first]).to_dict()
        feast_batch.append(time.perf_counter() - start)
        for batch in batches[first : first + lean_per_round]:
            start = time.perf_counter()
            reader.read(batch)
            lean_batch.append(time.perf_counter() - start)
    return lean_batch, feast_batch


def run(quick: bool) -> list[Result]:
    from serving.features import OnlineFeatureReader

    users, items, calls = (1_000, 1_000, 300) if quick else (10_000, 10_000, 2_000)
    rounds, lean_per_round = (30, 3) if quick else (100, 6)
    asked = _requests(users, items, calls, rounds * lean_per_round)
    rows = asked.rows
    with bench_store(users, items) as store:
        service = store.get_feature_service(c.PURCHASE_PROPENSITY_V1)
        reader = OnlineFeatureReader(store, c.PURCHASE_PROPENSITY_V1)
        floor = raw_floor(store, c.PURCHASE_PROPENSITY_V1)
        keys = [redis_keys(store, u, i, f"s{u}") for u, i in asked.picks]
        for request in (rows[:1], asked.batches[0]):
            if reader.read(request) != store.get_online_features(features=service, entity_rows=request).to_dict():
                raise AssertionError("the lean reader and Feast disagree: fix that before timing anything")
        single = per_call(
            {
                "raw": lambda k: floor(keys[k]),
                "lean": lambda k: reader.read([rows[k]]),
                "feast": lambda k: store.get_online_features(features=service, entity_rows=[rows[k]]).to_dict(),
            },
            calls,
        )
        lean_batch, feast_batch = _read_batches(store, reader, asked.batches, lean_per_round)
    return _results(single, lean_batch, feast_batch, users, items, lean_per_round)


def _results(
    single: dict[str, list[float]],
    lean_batch: list[float],
    feast_batch: list[float],
    users: int,
    items: int,
    lean_per_round: int,
) -> list[Result]:
    raw_note = (
        f"{len(single['raw']):,} single calls, each a different user/item/session (of {users:,}/{items:,}/{users:,}): "
        "one pipeline of 3 HMGETs with pre-built keys + `Value` parse and oneof read of the 37 stored values. No key "
        "building, no output dict, no ODFV: the floor, not a feature reader."
    )
    lean_note = (
        "OnlineFeatureReader.read([row]) -> the 40 columns + 3 join keys of Feast's to_dict() (checked equal first): "
        "the same pipeline and decoding + key serialisation, type normalisation, the ODFV request_context UDF."
    )
    raw = Result(CASE_NAME, "raw redis-py floor, 1 user", single["raw"], rows=1, note=raw_note)
    lean_goals = [Goal("ratio", "<=", 1.5), Goal("p99_ms", "<=", 1)]
    lean = Result(CASE_NAME, "lean reader, 1 user", single["lean"], rows=1, goals=lean_goals, note=lean_note)
    feast_note = "Reference: store.get_online_features(service, [row]).to_dict(), same requests, interleaved."
    feast = Result(CASE_NAME, "feast get_online_features, 1 user", single["feast"], rows=1, note=feast_note)
    lean100_note = (
        f"{len(lean_batch):,} calls, each on a batch of its own of 100 random items (one user + session each): "
        "one pipeline of 102 HMGETs (user and session read once)."
    )
    lean100 = Result(CASE_NAME, "lean reader, 1 user x 100 items", lean_batch, rows=100, note=lean100_note)
    lean100.goals.append(Goal("p99_ms", "<=", 10))
    feast100_note = (
        f"Reference: {len(feast_batch)} calls, interleaved with the lean ones (1 per {lean_per_round}), each on the "
        "batch the next lean call reads."
    )
    feast100 = Result(
        CASE_NAME, "feast get_online_features, 1 user x 100 items", feast_batch, rows=100, note=feast100_note
    )
    return [raw, with_ratio(lean, raw), with_ratio(feast, raw), lean100, with_ratio(feast100, lean100)]


CASE = Case(CASE_NAME, "purchase_propensity_v1 online reads on Redis: lean reader vs raw redis-py vs Feast", run)
