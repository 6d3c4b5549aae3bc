"""Feast, configured from Journey settings: one `RepoConfig` per profile, apply, materialise, online reads.

Each profile has one feature_store.yaml in `feature_repo/` (`feature_store.yaml`: local, `prod/feature_store.yaml`:
prod, connection details as `${VAR}`). Feast's own CLI reads it with `-f` under the environment that
`journey features env` prints; every Journey process loads the same file here, substituting the same variables,
derived from its settings (`connections.feast_environment`), so `feast -f` and Journey always see the same stores
and no file holds a secret. Feast is imported lazily: `import feast` costs seconds, and callers that never touch
the store should not pay for it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from sqlalchemy.engine import make_url

from journey.contracts import DEFAULT_DATA_DIR, feature_repo_environment
from journey.errors import InvalidInputError, ServiceUnavailableError
from journey.settings import PROJECT_ROOT, Profile, Settings
from journey.stores.connections import feast_environment

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore
    from feast.repo_config import RepoConfig

    from journey.stores.offline import OfflineTables

log = logging.getLogger(__name__)

FEATURE_REPO = PROJECT_ROOT / "feature_repo"
REPO_MODULES = ("entities", "data_sources", "feature_views", "on_demand", "feature_services")
FEATURE_STORE_YAML = {
    Profile.LOCAL: FEATURE_REPO / "feature_store.yaml",
    Profile.PROD: FEATURE_REPO / "prod" / "feature_store.yaml",
}
# what os.path.expandvars substitutes ($NAME, ${NAME}): Feast reads feature_store.yaml through it
_VARIABLE = re.compile(r"\$(\w+|\{[^}]*\})", re.ASCII)


def repo_config(settings: Settings) -> RepoConfig:
    """The Feast configuration of the active profile: its feature_store.yaml, read as `feast -f` reads it under
    `feast_environment(settings)` (Feast's `load_repo_config`, with the variables from settings, not os.environ)."""
    from feast.repo_config import RepoConfig
    from pydantic import ValidationError

    path = FEATURE_STORE_YAML[settings.profile]
    raw = load_feature_store_yaml(path, feast_environment(settings))
    if settings.profile is Profile.LOCAL:
        _relocate_local(raw, settings)
        settings.feast_dir.mkdir(parents=True, exist_ok=True)  # Feast's file registry creates one folder level only
    try:
        config = RepoConfig(**raw)
    except ValidationError as exc:  # what Feast's load_repo_config reports, as a Journey error naming the file
        raise InvalidInputError(f"{path}: {exc}", field=str(path)) from exc
    config.repo_path = FEATURE_REPO
    return config


def load_feature_store_yaml(path: Path, environment: Mapping[str, str]) -> dict[str, Any]:
    """The YAML's mapping after substituting `environment` exactly where os.path.expandvars would (text first,
    then YAML, as Feast does); a variable left unset is named here rather than failing later as a strange value."""

    missing: set[str] = set()

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1).removeprefix("{").removesuffix("}")
        if name not in environment:
            missing.add(match.group(0))
        return environment.get(name, match.group(0))

    raw = yaml.safe_load(_VARIABLE.sub(substitute, path.read_text(encoding="utf-8")))
    dumped = yaml.safe_dump(raw)  # only placeholders left in values count (a comment may name a variable)
    if unset := sorted(placeholder for placeholder in missing if placeholder in dumped):
        raise InvalidInputError(f"{path} names variables Journey does not set: {unset}", field=unset[0])
    return dict(raw)


def _relocate_local(raw: dict[str, Any], settings: Settings) -> None:
    """The local YAML describes the checkout (project `journey`, files under its data/ folder) so that a bare
    `feast apply` needs no environment; Journey's settings may name another project and data folder (tests,
    JOURNEY_DATA_DIR), and those win. With the default settings nothing changes: the config equals `feast -f`'s."""
    raw["project"] = settings.feast_project
    for section in ("registry", "online_store"):
        written = Path(raw[section]["path"])
        resolved = written if written.is_absolute() else (FEATURE_REPO / written).resolve()
        if resolved.is_relative_to(DEFAULT_DATA_DIR) and settings.data_dir != DEFAULT_DATA_DIR:
            raw[section]["path"] = str(settings.data_dir / resolved.relative_to(DEFAULT_DATA_DIR))


def local_overrides(settings: Settings) -> dict[str, str]:
    """What Journey's local config changes of feature_store.yaml for these settings (`key: value`); empty when a
    bare `feast -f feature_store.yaml` sees the same project and files as Journey."""
    path = FEATURE_STORE_YAML[Profile.LOCAL]
    written, ours = load_feature_store_yaml(path, {}), load_feature_store_yaml(path, {})
    _relocate_local(ours, settings)
    changed = {"project": (written["project"], ours["project"])}
    changed |= {f"{s}.path": (written[s]["path"], ours[s]["path"]) for s in ("registry", "online_store")}
    return {key: new for key, (old, new) in changed.items() if old != new}


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
    """Import the repo's modules anew so their sources follow the current environment (Feast imports them by bare
    name, and a module imported once would keep the first profile's sources)."""
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
    with feature_repo_environment(feast_environment(settings)), _fresh_repo_modules():
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
