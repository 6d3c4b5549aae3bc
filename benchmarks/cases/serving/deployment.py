"""The serving case's throw-away prod deployment: its own Feast project, offline and registry schemas, data dir and
admin token, with a small synthetic shop built, applied, materialised to Redis and three models trained and promoted.

Its own, so the bench never reads or promotes into a deployment someone else configured, and everything it made can
be removed at the end whatever happened: Redis keys and Feast registry rows, the offline and registry schemas, the
folder (kept, with the server logs, when the case failed).
"""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.cases.serving.sizes import CASE_NAME, Sizes
from journey.contracts import NEXT_ITEM_MODEL
from journey.settings import Profile, Settings, get_settings, use_settings

if TYPE_CHECKING:
    from training.pipeline import ModelKind

DATASET = "bench_serving"


@dataclass(frozen=True)
class Shop:
    """Entities requests are drawn from: each user's last session (with its last event time) and the items."""

    users: list[int]
    sessions: list[str]
    request_ts: list[int]
    items: list[int]
    prices: list[float]
    recommend_route: dict[str, Any] = field(default_factory=dict)  # /recommend's route over the next-item kinds


@dataclass
class Deployment:
    settings: Settings
    env: dict[str, str]  # the JOURNEY_* variables a server process of this deployment needs
    root: Path
    shop: Shop
    setup_note: str = ""


def _shop(events: Any, route: dict[str, Any]) -> Shop:
    frame = events.select(["user_id", "session_id", "item_id", "event_timestamp", "price"]).to_pandas()
    last = frame.sort_values("event_timestamp").groupby("user_id").tail(1)
    items = frame.dropna(subset=["price"]).drop_duplicates("item_id")
    return Shop(
        users=last["user_id"].astype(int).tolist(),
        sessions=last["session_id"].astype(str).tolist(),
        request_ts=[int(stamp.timestamp()) + 60 for stamp in last["event_timestamp"]],  # a minute after the last event
        items=items["item_id"].astype(int).tolist(),
        prices=items["price"].astype(float).round(2).tolist(),
        recommend_route=route,
    )


def _env(name: str, root: Path, base: Settings) -> dict[str, str]:
    """What a `bentoml serve` of this deployment needs in its environment (the server reads settings from env)."""
    token = base.admin_token.get_secret_value() if base.profile.value == "prod" and base.admin_token else ""
    return {
        "JOURNEY_PROFILE": "prod",
        "JOURNEY_FEAST_PROJECT": name,
        "JOURNEY_OFFLINE_SCHEMA": name,
        "JOURNEY_REGISTRY_SCHEMA": f"{name}_reg",
        "JOURNEY_REGISTRY_URL": base.postgres_dsn,  # never a registry configured elsewhere (it would be promoted in)
        "JOURNEY_DATA_DIR": str(root / "data"),
        "JOURNEY_REPORTS_DIR": str(root / "reports"),
        "JOURNEY_ADMIN_TOKEN": token or f"bench-{uuid.uuid4().hex}",
        "JOURNEY_REDIS_URL": base.redis_url,
        "JOURNEY_POSTGRES_DSN": base.postgres_dsn,
    }


def _settings(env: dict[str, str], root: Path, base: Settings) -> Settings:
    """The same deployment as settings, for the work this process does (build, apply, train, clean up)."""
    return Settings(
        profile=Profile.PROD,
        feast_project=env["JOURNEY_FEAST_PROJECT"],
        offline_schema=env["JOURNEY_OFFLINE_SCHEMA"],
        registry_schema=env["JOURNEY_REGISTRY_SCHEMA"],
        registry_url=env["JOURNEY_REGISTRY_URL"],
        data_dir=root / "data",
        reports_dir=root / "reports",
        admin_token=env["JOURNEY_ADMIN_TOKEN"],
        redis_url=base.redis_url,
        postgres_dsn=base.postgres_dsn,
    )


def _drop_schemas(settings: Settings, *schemas: str) -> None:
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    dsn = make_url(settings.postgres_dsn).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _teardown_feast(settings: Settings) -> None:
    from journey.stores.feature_store import open_store, teardown_project

    teardown_project(open_store(settings))


def _build(settings: Settings, sizes: Sizes, echo: Callable[[str], None]) -> tuple[Shop, str]:
    """Events -> features -> `feast apply` -> Redis, then the three models trained and promoted; the shop requests
    are drawn from and the set-up's note."""
    from journey.datasets.store import DatasetStore
    from journey.datasets.synthetic import SyntheticConfig, generate
    from journey.registry import Registry
    from journey.stores.feature_store import apply, materialize
    from training.pipeline import build_offline, run_training

    began = time.perf_counter()
    data = generate(SyntheticConfig(seed=7).scaled_to(sizes.events))
    DatasetStore(settings.events_dir).write(DATASET, data.events, source={"kind": "synthetic", "bench": CASE_NAME})
    with use_settings(settings):  # code that calls get_settings() sees this deployment, not the environment
        echo(f"   set-up: {data.events.num_rows:,} events -> features, feast apply, materialise")
        build_offline(DATASET, settings)
        apply(settings)
        materialize(settings, datetime.now(UTC) + timedelta(minutes=1))
        versions: dict[str, int] = {}
        kinds: tuple[ModelKind, ...] = ("propensity", "next-action", "next-item")
        for kind in kinds:
            echo(f"   set-up: training {kind} ({sizes.max_examples:,} examples at most)")
            trained = run_training(kind, DATASET, settings, max_examples=sizes.max_examples, actor="bench")
            versions[trained.version.name] = trained.version.version
        with Registry(settings) as registry:
            for model, version in versions.items():
                registry.promote(model, version, actor="bench")
        route = _route_every_kind(settings, sizes, versions[NEXT_ITEM_MODEL], echo)
    note = (
        f"{data.events.num_rows:,} synthetic events, the three models trained on <= {sizes.max_examples:,} "
        f"examples and promoted, every other next-item kind trained and routed beside the production one "
        f"({', '.join(str(v['name']) for v in route['variants'])}); set-up {time.perf_counter() - began:.0f} s"
    )
    return _shop(data.events, route), note


def _route_every_kind(settings: Settings, sizes: Sizes, production: int, echo: Callable[[str], None]) -> dict[str, Any]:
    """A next_item version of every other kind, and a `/recommend` route splitting users evenly over all the kinds
    (the production GRU4Rec version is one variant): the case times each kind on the same server, with users the
    route sends to it. Returns the route as `serving.routing.Router.from_dict` reads it."""
    from journey.contracts import RECOMMEND
    from journey.registry import Registry, RouteVariant
    from training.models.next_item import DEFAULT_KIND, KINDS
    from training.pipeline import run_training

    versions = {DEFAULT_KIND: production}
    for kind in (name for name in KINDS if name != DEFAULT_KIND):
        echo(f"   set-up: training next-item --kind {kind}")
        trained = run_training(
            "next-item", DATASET, settings, max_examples=sizes.max_examples, actor="bench", recommender=kind
        )
        versions[kind] = trained.version.version
    variants = [RouteVariant(kind, NEXT_ITEM_MODEL, version, 1) for kind, version in versions.items()]
    with Registry(settings) as registry:
        route: dict[str, Any] = registry.set_route(
            RECOMMEND, variants, actor="bench", experiment="bench-kinds"
        ).as_dict()
    return route


@contextlib.contextmanager
def deployment(sizes: Sizes, echo: Callable[[str], None] = print) -> Iterator[Deployment]:
    """A prod-profile deployment of its own, trained and materialised; removed on exit whatever happened."""
    from journey.stores.offline import OfflineTables

    base = get_settings()
    name = f"bench_serving_{uuid.uuid4().hex[:8]}"
    root = base.data_dir / "bench" / name
    env = _env(name, root, base)
    settings = _settings(env, root, base)
    with contextlib.ExitStack() as cleanup:  # callbacks run last-in first-out, each even if another one raised
        cleanup.callback(_drop_schemas, settings, settings.offline_schema, settings.registry_schema)
        cleanup.callback(lambda: OfflineTables(settings).drop_all())
        cleanup.callback(_teardown_feast, settings)
        try:
            shop, note = _build(settings, sizes, echo)
            yield Deployment(settings, env, root, shop, note)
        except BaseException:
            echo(f"   serving bench failed: its files (server logs among them) are kept in {root}")
            raise
        shutil.rmtree(root, ignore_errors=True)
