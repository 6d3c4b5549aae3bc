"""Feast, configured from Journey settings: one `RepoConfig` per profile, apply, materialise, online reads.

`feature_repo/feature_store.yaml` serves `cd feature_repo && feast apply` for the embedded profile; every Journey
process builds its config here instead, so JOURNEY_* settings (data dir, Redis URL, PostgreSQL DSN, project) are
the one source of truth and `prod` needs no YAML with secrets in it. Feast is imported lazily: `import feast` costs
seconds, and callers that never touch the store should not pay for it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from journey.errors import InvalidInputError, ServiceUnavailableError
from journey.settings import PROJECT_ROOT, Profile, Settings, use_settings
from journey.stores.connections import postgres_params, redis_connection_string

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore
    from feast.repo_config import RepoConfig

    from journey.stores.offline import OfflineTables

log = logging.getLogger(__name__)

FEATURE_REPO = PROJECT_ROOT / "feature_repo"
REPO_MODULES = ("entities", "data_sources", "feature_views", "on_demand", "feature_services")


def repo_config(settings: Settings) -> RepoConfig:
    """The Feast configuration of the active profile."""
    from feast.repo_config import RegistryConfig, RepoConfig

    common: dict[str, Any] = {
        "project": settings.feast_project,
        "provider": "local",
        "entity_key_serialization_version": 3,
        "repo_path": FEATURE_REPO,
    }
    if settings.profile is Profile.PROD:
        pg = postgres_params(settings.postgres_dsn)
        return RepoConfig(
            **common,
            registry={  # a dict, so Feast builds its SqlRegistryConfig (a RegistryConfig instance is rejected)
                "registry_type": "sql",
                "path": settings.postgres_dsn,
                "cache_ttl_seconds": 60,
                "sqlalchemy_config_kwargs": {"pool_pre_ping": True},
            },
            online_store={"type": "redis", "connection_string": redis_connection_string(settings.redis_url)},
            offline_store={
                "type": "postgres",
                "db_schema": settings.offline_schema,
                **pg,
            },
        )
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    return RepoConfig(
        **common,
        registry=RegistryConfig(path=str(settings.feast_dir / "registry.db"), cache_ttl_seconds=60),
        online_store={"type": "sqlite", "path": str(settings.feast_dir / "online.db")},
        offline_store={"type": "file"},
    )


def open_store(settings: Settings) -> FeatureStore:
    """A FeatureStore for the active profile (the registry is read lazily by Feast)."""
    from feast import FeatureStore

    return FeatureStore(repo_path=str(FEATURE_REPO), config=repo_config(settings))


@contextlib.contextmanager
def opened_store(settings: Settings) -> Iterator[FeatureStore]:
    """A store whose registry connections are closed on exit (for commands and tests, not long-lived servers)."""
    store = open_store(settings)
    try:
        yield store
    finally:
        close_store(store)


@contextlib.contextmanager
def _fresh_repo_modules() -> Iterator[None]:
    """Import the repo's modules anew so they read the current settings (Feast imports them by bare name)."""
    for name in REPO_MODULES:
        sys.modules.pop(name, None)
    sys.path.insert(0, str(FEATURE_REPO))
    try:
        with contextlib.chdir(FEATURE_REPO):  # Feast names modules by their path relative to the cwd
            yield
    finally:
        sys.path.remove(str(FEATURE_REPO))
        for name in REPO_MODULES:
            sys.modules.pop(name, None)


@dataclass(frozen=True)
class ApplyResult:
    project: str
    diff: str
    objects: dict[str, list[str]]


def apply(settings: Settings) -> ApplyResult:
    """`feast apply` for the active profile: register definitions, create online tables, drop removed objects."""
    from feast.repo_operations import apply_total_with_repo_instance, parse_repo

    from journey.stores.offline import OfflineTables

    ensure_push_table(OfflineTables(settings))
    store = open_store(settings)
    with use_settings(settings), _fresh_repo_modules():
        repo = parse_repo(FEATURE_REPO)
    out = io.StringIO()
    try:
        with _store_errors(settings), contextlib.redirect_stdout(out), warnings.catch_warnings():
            # Feast warns on every apply that on-demand views are "experimental" and slow offline; ours are
            # Python mode on purpose and the offline path computes them once per training set (STACK-NOTES).
            warnings.filterwarnings("ignore", "On demand feature view is an experimental feature", RuntimeWarning)
            apply_total_with_repo_instance(store, settings.feast_project, store.registry, repo, False)
    finally:
        close_store(store)
    objects = {
        "entities": sorted(e.name for e in repo.entities if not e.name.startswith("__")),
        "feature_views": sorted(v.name for v in repo.feature_views),
        "on_demand_feature_views": sorted(v.name for v in repo.on_demand_feature_views),
        "feature_services": sorted(s.name for s in repo.feature_services),
    }
    log.info("feast apply done", extra={"project": settings.feast_project, **objects})
    return ApplyResult(settings.feast_project, out.getvalue(), objects)


def ensure_push_table(tables: OfflineTables) -> None:
    """The push source's batch table must exist before the first push or materialisation."""
    from journey.contracts import SESSION_ACTIVITY
    from journey.session_features import empty_session_rows

    if not tables.exists(SESSION_ACTIVITY):
        tables.write(SESSION_ACTIVITY, empty_session_rows(), "replace")


def feature_service(store: FeatureStore, name: str) -> FeatureService:
    """Resolve a feature service by name with a clear error (Feast's message lists nothing useful)."""
    from feast.errors import FeatureServiceNotFoundException

    try:
        return store.get_feature_service(name)
    except FeatureServiceNotFoundException as exc:
        known = sorted(s.name for s in store.list_feature_services())
        raise InvalidInputError(
            f"unknown feature service {name!r}; known: {known or 'none (run journey features apply)'}",
            field="feature_service",
            value=name,
        ) from exc


@contextlib.contextmanager
def _store_errors(settings: Settings) -> Iterator[None]:
    """Connection failures of Redis/PostgreSQL become ServiceUnavailableError naming the endpoint."""
    import psycopg
    import redis
    import sqlalchemy.exc

    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise ServiceUnavailableError(
            f"online store unreachable at {settings.redis_url}: {exc}. Start Redis, then re-run (it is safe)."
        ) from exc
    except (psycopg.OperationalError, sqlalchemy.exc.OperationalError) as exc:
        where = make_url(settings.postgres_dsn).render_as_string(hide_password=True)
        raise ServiceUnavailableError(f"PostgreSQL unreachable at {where}: {exc}") from exc


def materialize(settings: Settings, end: datetime, views: list[str] | None = None) -> dict[str, Any]:
    """Incremental materialisation up to `end`; see journey.stores.materialize for why it is safe to re-run."""
    from journey.stores.materialize import materialize_incremental

    with opened_store(settings) as store, _store_errors(settings):
        return materialize_incremental(store, settings, end, views)


def close_store(store: FeatureStore) -> None:
    """Release the SQL registry's pooled connections now (left to the garbage collector they leak until exit)."""
    for engine in ("write_engine", "read_engine"):
        if (pool := getattr(store.registry, engine, None)) is not None:
            pool.dispose()


def teardown_project(store: FeatureStore) -> None:
    """Remove this project's online data and registry entries, and nothing else.

    Feast's `FeatureStore.teardown()` deletes *every* project in the registry (it loops over `list_projects()`),
    which on a shared SQL registry wipes other teams' (and other tests') definitions. Feast's `delete_project` also
    keeps the feature views' version history (re-applying the same project name then fails) and the project's
    metadata rows; they go too.
    """
    project = store.project
    if views := store.list_feature_views():
        store._get_provider().teardown_infra(project, views, store.list_entities())
    if any(p.name == project for p in store.list_projects()):
        store.registry.delete_project(project)
    engine = getattr(store.registry, "write_engine", None)
    if engine is not None:
        from sqlalchemy import text

        with engine.begin() as conn:  # rows Feast's delete_project leaves behind
            for table in ("feature_view_version_history", "feast_metadata"):
                conn.execute(text(f"DELETE FROM {table} WHERE project_id = :p"), {"p": project})
    close_store(store)
