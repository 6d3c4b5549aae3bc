"""Fixtures of the integration tests: real services, isolated per test, skipped locally when absent.

Like `skip_or_fail` in tests/conftest.py (not importable under --import-mode=importlib): a missing service skips
the test on a developer's machine and fails it under REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from journey.errors import ServiceUnavailableError
from journey.settings import Settings, get_settings
from journey.stores.offline import OfflineTables


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("REQUIRE_SERVICES", "") == "1":
        pytest.fail(f"required service unavailable: {reason}")
    pytest.skip(reason)


@pytest.fixture
def postgres_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Prod settings on the real PostgreSQL (JOURNEY_POSTGRES_DSN or 127.0.0.1:5432) with an offline schema of
    this test's own, dropped afterwards."""
    monkeypatch.setenv("JOURNEY_PROFILE", "prod")
    monkeypatch.setenv("JOURNEY_ADMIN_TOKEN", "integration-test-token")
    monkeypatch.setenv("JOURNEY_OFFLINE_SCHEMA", f"journey_test_{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("JOURNEY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JOURNEY_REPORTS_DIR", str(tmp_path / "reports"))
    get_settings.cache_clear()
    settings = get_settings()
    tables = OfflineTables(settings)
    try:
        tables.exists("probe")
    except ServiceUnavailableError as exc:
        get_settings.cache_clear()
        _skip_or_fail(str(exc))
    try:
        yield settings
    finally:
        tables.drop_all()
        get_settings.cache_clear()


@pytest.fixture
def registry_postgres_settings(postgres_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """`postgres_settings` plus a model registry schema of this test's own, not created yet (the registry's
    migrations must create it) and dropped with everything in it afterwards."""
    schema = f"journey_registry_test_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("JOURNEY_REGISTRY_SCHEMA", schema)
    get_settings.cache_clear()
    settings = get_settings()
    try:
        yield settings
    finally:
        drop_schema(settings, schema)
        get_settings.cache_clear()


def drop_schema(settings: Settings, schema: str) -> None:
    """Drop a PostgreSQL schema of a test with everything in it (the engine is disposed: no leaked connection)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(settings.postgres_dsn)
    try:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()
