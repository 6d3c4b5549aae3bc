"""Feature store write side, prod profile (PostgreSQL offline -> Redis online), measured side by side:

- materialise `user_activity` (all snapshots, the first run of a new deployment) with Feast's engine vs Journey's
  Redis path (same offline table, same Redis, separate projects); goal >= 500k feature values/s;
- the daily incremental run (the last snapshot day only), Journey's path;
- push-to-visible: one event through `push_records` until `get_online_features` returns it.
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import pyarrow.compute as pc

from benchmarks.harness import Case, Goal, Result, interleaved, with_ratio
from journey.contracts import SESSION_ACTIVITY, USER_ACTIVITY
from journey.datasets.store import DatasetStore
from journey.datasets.synthetic import SyntheticConfig, generate
from journey.settings import Settings, get_settings
from journey.stores.feature_store import apply, open_store, teardown_project
from journey.stores.materialize import pull_and_write, pull_latest
from journey.stores.offline import OfflineTables
from journey.stores.push import push_records
from training.features import build_features


def _settings(project: str, schema: str) -> Settings:
    """Prod-profile settings on the configured Redis/PostgreSQL, in a throw-away project and schema."""
    base = get_settings()
    token = base.admin_token.get_secret_value() if base.profile.value == "prod" and base.admin_token else "bench"
    return Settings(
        profile="prod",
        admin_token=token,
        feast_project=project,
        offline_schema=schema,
        data_dir=base.data_dir,
        redis_url=base.redis_url,
        postgres_dsn=base.postgres_dsn,
    )


def run(quick: bool) -> list[Result]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    feast_side, ours = _settings(f"{schema}_f", schema), _settings(f"{schema}_j", schema)
    data = generate(SyntheticConfig(seed=11).scaled_to(60_000 if quick else 330_000))
    DatasetStore(ours.events_dir).write(schema, data.events, source={"kind": "bench"})
    try:
        build_features(schema, ours)
        for s in (feast_side, ours):
            apply(s)
        return _measure(feast_side, ours, quick)
    finally:
        for s in (feast_side, ours):
            teardown_project(open_store(s))
        OfflineTables(ours).drop_all()


def _measure(feast_side: Settings, ours: Settings, quick: bool) -> list[Result]:
    feast_store, our_store = open_store(feast_side), open_store(ours)
    view = our_store.get_feature_view(USER_ACTIVITY)
    table = OfflineTables(ours).read(USER_ACTIVITY)
    first, last = (pc.min(table["event_timestamp"]).as_py(), pc.max(table["event_timestamp"]).as_py())
    start, end = first - timedelta(seconds=1), last + timedelta(hours=1)
    entities = pull_latest(ours, view, start, end).num_rows
    values = entities * len(view.features)
    timings = interleaved(
        {
            "feast": lambda: feast_store.materialize(start_date=start, end_date=end, feature_views=[USER_ACTIVITY]),
            "journey": lambda: pull_and_write(our_store, ours, view, start, end),
        },
        repetitions=1 if quick else 3,
        warmup=0,
    )
    day_start = last - timedelta(days=1)
    daily_rows = pull_latest(ours, view, day_start, end).num_rows
    daily = interleaved(
        {"d": lambda: pull_and_write(our_store, ours, view, day_start, end)},
        repetitions=3,
        warmup=1,
    )["d"]
    note = f"{entities:,} users x {len(view.features)} features, {table.num_rows:,} snapshot rows in PostgreSQL"
    baseline = Result(
        "materialise", "Feast engine (full history)", timings["feast"], rows=values, unit="values", note=note
    )
    candidate = with_ratio(
        Result(
            "materialise",
            "Journey Redis path (full history)",
            timings["journey"],
            rows=values,
            unit="values",
            goals=[Goal("throughput", ">=", 500_000)],
            note="same data, same Redis, own project",
        ),
        baseline,
    )
    incremental = Result(
        "materialise",
        "Journey daily incremental (last day)",
        daily,
        rows=daily_rows * len(view.features),
        unit="values",
        goals=[Goal("throughput", ">=", 500_000)],
    )
    return [baseline, candidate, incremental, _push_to_visible(ours, 50 if quick else 300)]


def _push_to_visible(settings: Settings, n: int) -> Result:
    store, tables = open_store(settings), OfflineTables(settings)
    refs = [f"{SESSION_ACTIVITY}:session_events"]
    samples, totals = [], []
    for i in range(n):
        session = f"bench-{i}-{uuid.uuid4().hex[:6]}"
        event = {
            "event_id": session,
            "user_id": i,
            "session_id": session,
            "item_id": 1,
            "event_type": "view",
            "event_timestamp": datetime.now(UTC).isoformat(),
        }
        began = time.perf_counter()
        result = push_records(store, tables, [event])
        totals.append(time.perf_counter() - began)
        samples.append(result.push_seconds)
        seen = store.get_online_features(features=refs, entity_rows=[{"session_id": session}]).to_dict()
        if seen["session_events"] != [1]:
            raise AssertionError(f"pushed session {session} not visible online: {seen}")
    note = (
        "validated event -> session row readable online (state read, fold, Redis write); the whole call incl. the "
        f"offline append to PostgreSQL took median {statistics.median(totals) * 1000:.1f} ms over {n}"
    )
    return Result("push", "push one event -> visible online", samples, note=note)


CASE = Case("feature_store", "materialise to Redis (Feast vs Journey) and push-to-visible", run)
