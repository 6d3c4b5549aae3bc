"""A real prod-profile Feast project (Redis online store, PostgreSQL registry + offline tables) per test module.

Each module gets its own project and offline schema, so parallel runs and other people's projects in the same
Redis/PostgreSQL are never touched, and the fixture removes everything it created: Redis keys, registry rows,
the offline schema. Not `store.teardown()`: in Feast 0.67 it deletes EVERY project of the SQL registry.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from journey.settings import Settings, get_settings
from journey.stores.feature_store import close_store


def skip_or_fail(reason: str) -> None:
    """Skip locally; fail under REQUIRE_SERVICES=1 (copied from tests/conftest.py: importlib mode, no imports)."""
    if os.environ.get("REQUIRE_SERVICES", "") == "1":
        pytest.fail(f"required service unavailable: {reason}")
    pytest.skip(reason)


def _reachable(url: str, default_port: int) -> bool:
    parts = make_url(url)
    try:
        with socket.create_connection((parts.host or "127.0.0.1", parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def prod_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """JOURNEY_* variables of a fresh prod project; the feature repo's modules read them through get_settings()."""
    probe = Settings()
    if not _reachable(probe.redis_url, 6379):
        skip_or_fail(f"Redis not reachable at {probe.redis_url}")
    if not _reachable(probe.postgres_dsn, 5432):
        skip_or_fail(f"PostgreSQL not reachable at {make_url(probe.postgres_dsn).render_as_string()}")
    name = f"jt_{request.module.__name__.rsplit('.', 1)[-1][:16]}_{uuid.uuid4().hex[:8]}".lower()
    env = {
        "JOURNEY_PROFILE": "prod",
        "JOURNEY_ADMIN_TOKEN": "integration-test-token",
        "JOURNEY_FEAST_PROJECT": name,
        "JOURNEY_OFFLINE_SCHEMA": name,
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        get_settings.cache_clear()
        yield env
    get_settings.cache_clear()


@pytest.fixture
def store_with_redis_at(prod_store: Any) -> Iterator[Callable[[str], Any]]:
    """Opens the same project (registry in PostgreSQL) with its online store at another Redis URL."""
    from journey.stores.feature_store import open_store

    opened: list[Any] = []

    def open_at(redis_url: str) -> Any:
        opened.append(open_store(Settings(redis_url=redis_url)))
        return opened[-1]

    yield open_at
    for store in opened:
        close_store(store)


@pytest.fixture(scope="module")
def prod_store(prod_env: dict[str, str]) -> Iterator[Any]:
    """`feast apply` of the repo into the module's project; everything it creates is removed afterwards."""
    from journey.stores.feature_store import apply, open_store

    settings = get_settings()
    try:
        apply(settings)
        store = open_store(settings)
        yield store
        close_store(store)
    finally:
        drop_project(settings)


def drop_project(settings: Settings) -> None:
    """Redis keys of the project, its registry rows (incl. version history) and its offline schema."""
    from journey.stores.feature_store import open_store, teardown_project
    from journey.stores.offline import OfflineTables

    teardown_project(open_store(settings))
    OfflineTables(settings).drop_all()
