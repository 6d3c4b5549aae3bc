"""The feature store end to end in both profiles: build -> apply -> materialise -> online reads, and pushes.

`local` runs embedded (files + SQLite); `prod` runs against the real Redis (127.0.0.1:6379) and PostgreSQL
(127.0.0.1:5432). Each test module gets its own Feast project and PostgreSQL schema and removes them afterwards.
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from journey.contracts import SESSION_ACTIVITY, USER_ACTIVITY, USER_ACTIVITY_FEATURES
from journey.datasets.store import DatasetStore
from journey.datasets.synthetic import SyntheticConfig, generate
from journey.errors import InvalidInputError, ServiceUnavailableError
from journey.session_features import session_rows
from journey.settings import Settings
from journey.stores.feature_store import apply, close_store, feature_service, materialize, open_store, teardown_project
from journey.stores.offline import OfflineTables
from journey.stores.push import push_records
from training.features import build_features

pytestmark = pytest.mark.integration


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _require(host: str, port: int, name: str) -> None:
    if not _reachable(host, port):
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"{name} at {host}:{port} is required (REQUIRE_SERVICES=1) but unreachable")
        pytest.skip(f"{name} at {host}:{port} unreachable")


def _settings(profile: str, tmp: Path, **overrides: Any) -> Settings:
    if profile == "local":
        return Settings(data_dir=tmp, **overrides)
    _require("127.0.0.1", 6379, "Redis")
    _require("127.0.0.1", 5432, "PostgreSQL")
    tag = f"t{uuid.uuid4().hex[:10]}"
    return Settings(
        profile="prod", admin_token="test-token", data_dir=tmp, feast_project=tag, offline_schema=tag, **overrides
    )


def _drop(settings: Settings) -> None:
    teardown_project(open_store(settings))
    OfflineTables(settings).drop_all()


@pytest.fixture
def stores() -> Iterator[Any]:
    """Opens stores for a test and closes their registry connections afterwards."""
    opened: list[Any] = []

    def open_for(settings: Settings) -> Any:
        opened.append(open_store(settings))
        return opened[-1]

    yield open_for
    for store in opened:
        close_store(store)


@pytest.fixture(scope="module", params=["local", "prod"])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A small synthetic shop, its features built, applied and materialised up to its last snapshot."""
    settings = _settings(request.param, tmp_path_factory.mktemp(request.param))
    data = generate(SyntheticConfig(n_users=150, n_items=300, days=6, seed=3))
    DatasetStore(settings.events_dir).write("shop", data.events, source={"kind": "test"})
    try:
        build_features("shop", settings)
        OfflineTables(settings).write(SESSION_ACTIVITY, session_rows(data.events), "replace")
        apply(settings)
        materialize(settings, end=_last_snapshot(settings) + timedelta(hours=1))
        yield settings
    finally:
        _drop(settings)


def _last_snapshot(settings: Settings) -> datetime:
    table = OfflineTables(settings).read(USER_ACTIVITY)
    return pc.max(table["event_timestamp"]).as_py().astimezone(UTC)


def _latest_offline(settings: Settings) -> dict[int, dict[str, Any]]:
    rows = (
        OfflineTables(settings)
        .read(USER_ACTIVITY)
        .sort_by([("user_id", "ascending"), ("event_timestamp", "ascending")])
    )
    latest: dict[int, dict[str, Any]] = {}
    for row in rows.to_pylist():
        latest[row["user_id"]] = row  # ascending order: the last one wins
    return latest


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if a is None and isinstance(b, float) and math.isnan(b):
        return True  # Feast stores NaN as an empty value and reads it back as None
    return bool(a == b)


def test_online_features_equal_the_latest_offline_snapshot(built: Settings, stores: Any) -> None:
    latest = _latest_offline(built)
    users = sorted(latest)[:60]
    store = stores(built)
    online = store.get_online_features(
        features=[f"{USER_ACTIVITY}:{f}" for f in USER_ACTIVITY_FEATURES], entity_rows=[{"user_id": u} for u in users]
    ).to_dict()
    mismatches = [
        (u, f, online[f][i], latest[u][f])
        for i, u in enumerate(users)
        for f in USER_ACTIVITY_FEATURES
        if not _same(online[f][i], latest[u][f])
    ]
    assert not mismatches, mismatches[:5]


def test_a_second_materialise_is_a_no_op(built: Settings) -> None:
    stats = materialize(built, end=_last_snapshot(built) + timedelta(hours=1))
    assert all(info.get("skipped") == "up to date" for info in stats.values()), stats


def test_push_makes_session_features_visible_at_once_and_continues_the_session(built: Settings, stores: Any) -> None:
    store, tables = stores(built), OfflineTables(built)
    session = f"push-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(microsecond=0)

    def event(i: int, kind: str, at: datetime) -> dict[str, Any]:
        return {
            "event_id": f"{session}-{i}",
            "user_id": 7,
            "session_id": session,
            "item_id": 100 + i,
            "event_type": kind,
            "event_timestamp": at.isoformat(),
            "price": 5.0,
            **({"category_id": 40 + i} if i != 2 else {}),  # event 2 has no category
        }

    first = push_records(
        store,
        tables,
        [event(1, "view", now - timedelta(seconds=30)), event(2, "add_to_cart", now - timedelta(seconds=20))],
    )
    assert (first.accepted, first.rejected) == (2, 0)
    refs = [f"{SESSION_ACTIVITY}:{f}" for f in ("session_events", "session_carts", "session_last_item_ids")]
    read = store.get_online_features(features=refs, entity_rows=[{"session_id": session}]).to_dict()
    assert (read["session_events"], read["session_carts"], read["session_last_item_ids"]) == ([2], [1], [[101, 102]])

    push_records(store, tables, [event(3, "purchase", now - timedelta(seconds=10))])
    lists = ["session_last_event_types", "session_last_event_ts", "session_last_category_ids"]
    read = store.get_online_features(
        features=refs + [f"{SESSION_ACTIVITY}:{f}" for f in lists], entity_rows=[{"session_id": session}]
    ).to_dict()
    assert read["session_events"] == [3] and read["session_last_item_ids"] == [[101, 102, 103]]
    # the continued lists are the ones a replay of the whole session gives
    stamp = int(now.timestamp())
    assert read["session_last_event_types"] == [["view", "add_to_cart", "purchase"]]
    assert read["session_last_event_ts"] == [[stamp - 30, stamp - 20, stamp - 10]]
    assert read["session_last_category_ids"] == [[41, -1, 43]]
    offline = tables.read(SESSION_ACTIVITY).filter(pc.equal(pc.field("session_id"), session))
    assert sorted(offline["session_events"].to_pylist()) == [1, 2, 3]


def test_push_rejects_an_event_with_an_unknown_or_missing_field_naming_it_and_stores_nothing(
    built: Settings, stores: Any
) -> None:
    store, tables = stores(built), OfflineTables(built)
    before = tables.read(SESSION_ACTIVITY).num_rows
    bad = {
        "event_id": "x",
        "user_id": 1,
        "session_id": "s",
        "item_id": 1,
        "event_type": "view",
        "event_timestamp": datetime.now(UTC).isoformat(),
        "colour": "red",
    }
    assert [(r["field"], r["reason"]) for r in push_records(store, tables, [bad]).rejects] == [
        ("colour", "unknown_field")
    ]
    missing = {k: v for k, v in bad.items() if k not in {"colour", "item_id"}}
    assert [(r["field"], r["reason"]) for r in push_records(store, tables, [missing]).rejects] == [
        ("item_id", "missing_field")
    ]
    assert tables.read(SESSION_ACTIVITY).num_rows == before


def test_push_stores_good_events_and_reports_bad_ones(built: Settings, stores: Any) -> None:
    store, tables = stores(built), OfflineTables(built)
    at = datetime.now(UTC).isoformat()
    good = {
        "event_id": "g1",
        "user_id": 1,
        "session_id": f"mix-{uuid.uuid4().hex[:6]}",
        "item_id": 1,
        "event_type": "view",
        "event_timestamp": at,
    }
    bad = {**good, "event_id": "b1", "event_type": "click"}
    result = push_records(store, tables, [good, bad])
    assert (result.accepted, result.rejected) == (1, 1)
    assert result.rejects[0]["reason"] == "unknown_event_type" and result.rejects[0]["value"] == "click"


def test_unknown_feature_service_is_named(built: Settings, stores: Any) -> None:
    with pytest.raises(InvalidInputError, match="purchase_propensity_v9"):
        feature_service(stores(built), "purchase_propensity_v9")


@pytest.fixture
def prod_settings(tmp_path: Path) -> Iterator[Settings]:
    settings = _settings("prod", tmp_path)
    yield settings
    _drop(settings)


def test_materialise_with_redis_down_fails_clearly_and_a_rerun_recovers(prod_settings: Settings, stores: Any) -> None:
    data = generate(SyntheticConfig(n_users=40, n_items=80, days=4, seed=5))
    DatasetStore(prod_settings.events_dir).write("shop", data.events, source={"kind": "test"})
    build_features("shop", prod_settings)
    apply(prod_settings)
    end = _last_snapshot(prod_settings) + timedelta(hours=1)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    down = prod_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{dead_port}/0"})
    with pytest.raises(ServiceUnavailableError, match=str(dead_port)):
        materialize(down, end=end)
    stats = materialize(prod_settings, end=end)
    assert stats[USER_ACTIVITY]["entities"] > 0
    latest = _latest_offline(prod_settings)
    user = min(latest)
    online = (
        stores(prod_settings)
        .get_online_features(features=[f"{USER_ACTIVITY}:views_30d"], entity_rows=[{"user_id": user}])
        .to_dict()
    )
    assert online["views_30d"] == [latest[user]["views_30d"]]


def test_a_crash_mid_materialise_leaves_the_interval_open_and_a_rerun_completes(
    prod_settings: Settings, monkeypatch: pytest.MonkeyPatch, stores: Any
) -> None:
    from journey.stores import materialize as mat

    data = generate(SyntheticConfig(n_users=40, n_items=80, days=4, seed=6))
    DatasetStore(prod_settings.events_dir).write("shop", data.events, source={"kind": "test"})
    build_features("shop", prod_settings)
    apply(prod_settings)
    end = _last_snapshot(prod_settings) + timedelta(hours=1)
    original = mat.RedisWriter.write

    def crash_after_writing(self: Any, view: Any, rows: pa.Table) -> int:
        original(self, view, rows.slice(0, rows.num_rows // 2))
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(mat.RedisWriter, "write", crash_after_writing)
    with pytest.raises(RuntimeError, match="killed"):
        materialize(prod_settings, end=end, views=[USER_ACTIVITY])
    monkeypatch.setattr(mat.RedisWriter, "write", original)
    stats = materialize(prod_settings, end=end, views=[USER_ACTIVITY])
    assert "skipped" not in stats[USER_ACTIVITY]  # the interval was not recorded by the crashed run
    latest = _latest_offline(prod_settings)
    users = sorted(latest)
    online = (
        stores(prod_settings)
        .get_online_features(features=[f"{USER_ACTIVITY}:views_30d"], entity_rows=[{"user_id": u} for u in users])
        .to_dict()
    )
    assert online["views_30d"] == [latest[u]["views_30d"] for u in users]
