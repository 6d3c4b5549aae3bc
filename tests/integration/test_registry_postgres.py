"""The model registry on the prod profile: Alembic migrations into an empty PostgreSQL schema and a full round trip."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, insert, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from journey.errors import InvalidInputError
from journey.registry import (
    HEAD_REVISION,
    AuditKind,
    Base,
    ModelVersion,
    ModelVersionRow,
    Registry,
    RouteVariant,
    RouteVariantRow,
    Stage,
    alembic_config,
)
from journey.settings import Settings
from tests.factories.models import tiny_onnx

pytestmark = pytest.mark.integration

NAME = "purchase_propensity"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine(registry_postgres_settings: Settings) -> Iterator[Engine]:
    """A plain engine (no schema translation) to look at what the registry wrote."""
    plain = create_engine(registry_postgres_settings.postgres_dsn)
    yield plain
    plain.dispose()


@pytest.fixture
def registry(registry_postgres_settings: Settings) -> Iterator[Registry]:
    with Registry(registry_postgres_settings) as reg:
        yield reg


def register(registry: Registry, tmp_path: Path) -> ModelVersion:
    path, sha = tiny_onnx(tmp_path / "model.onnx")
    return registry.register(
        name=NAME,
        onnx_path=path,
        expected_sha256=sha,
        framework="xgboost",
        feature_service="purchase_propensity_v1",
        metrics={"roc_auc": np.float64(0.8), "undefined": float("nan")},
        data_window={"train": ["2026-09-01", "2026-09-20"]},
        params={"max_depth": 4},
        actor="alice",
    )


def tables_in(engine: Engine, schema: str) -> set[str]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema})
        return {str(name) for (name,) in rows}


def test_migrate_creates_the_schema_its_tables_and_the_version_table_in_it(
    registry: Registry, registry_postgres_settings: Settings, engine: Engine
) -> None:
    schema = registry_postgres_settings.registry_schema
    assert tables_in(engine, schema) == set()
    assert registry.migrate() == HEAD_REVISION
    assert tables_in(engine, schema) == {
        "alembic_version",
        "model_versions",
        "audit_log",
        "routes",
        "route_variants",
        "route_history",
    }
    with engine.connect() as connection:
        version = connection.execute(text(f'SELECT version_num FROM "{schema}".alembic_version')).scalar()
        assert version == HEAD_REVISION
    assert registry.current_revision() == HEAD_REVISION and registry.location.endswith(f"(schema {schema})")


def test_migrated_postgres_schema_matches_the_orm_models(
    registry: Registry, registry_postgres_settings: Settings, engine: Engine
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    registry.migrate()
    with engine.connect() as connection:
        connection.execute(text(f'SET search_path TO "{registry_postgres_settings.registry_schema}"'))
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_processes_migrating_an_empty_schema_at_once_all_succeed(registry: Registry) -> None:
    """Replicas starting together: the advisory lock lets one create the schema while the others wait."""
    code = "from journey.registry import Registry\nwith Registry() as r:\n    print(r.migrate())"
    processes = [
        subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    outcomes = [(p.wait(timeout=120), p.communicate()) for p in processes]
    assert [(code, out.decode().strip()) for code, (out, _err) in outcomes] == [(0, HEAD_REVISION)] * 3, outcomes
    assert registry.current_revision() == HEAD_REVISION


def test_register_promote_rollback_round_trip(registry: Registry, tmp_path: Path) -> None:
    first, second = register(registry, tmp_path), register(registry, tmp_path)
    assert (first.version, second.version) == (1, 2)
    assert first.metrics == {"roc_auc": 0.8, "undefined": None} and first.created_at.utcoffset() is not None
    registry.promote(NAME, 1, "bob")
    registry.promote(NAME, 2, "bob")
    registry.promote(NAME, 1, "bob")  # rollback
    assert {mv.version: mv.stage for mv in registry.list(name=NAME)} == {1: Stage.PRODUCTION, 2: Stage.ARCHIVED}
    actions = [(e.action, e.version, e.before, e.after) for e in registry.audit(name=NAME)][:2]
    assert actions == [
        ("promote", 1, {"stage": "archived"}, {"stage": "production"}),
        ("archive", 2, {"stage": "production"}, {"stage": "archived"}),
    ]
    assert (
        registry.artifact_path(registry.get(NAME, "production")).read_bytes() == (tmp_path / "model.onnx").read_bytes()
    )


def test_concurrent_registrations_get_distinct_versions(registry: Registry, tmp_path: Path) -> None:
    folders = [tmp_path / str(index) for index in range(4)]
    for folder in folders:
        folder.mkdir()
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(register, registry, folder) for folder in folders]
    assert sorted(future.result().version for future in futures) == [1, 2, 3, 4]


def test_postgres_refuses_a_second_production_version(
    registry: Registry, registry_postgres_settings: Settings, tmp_path: Path, engine: Engine
) -> None:
    register(registry, tmp_path)
    register(registry, tmp_path)
    registry.promote(NAME, 1, "bob")
    statement = update(ModelVersionRow).where(ModelVersionRow.version == 2).values(stage="production")
    with pytest.raises(IntegrityError), engine.begin() as connection:
        schema = registry_postgres_settings.registry_schema
        connection.execution_options(schema_translate_map={None: schema}).execute(statement)


# ---------------------------------------------------------------------------------------------------------- routes


def test_routes_round_trip_deploy_shadow_rollback_on_postgres(registry: Registry, tmp_path: Path) -> None:
    for _ in range(3):
        register(registry, tmp_path)
    registry.promote(NAME, 1, "bob")
    first = registry.deploy("predict_purchase", 2, 10, actor="bob")
    registry.set_shadow("predict_purchase", 3, actor="carol")
    route = registry.route("predict_purchase")
    assert [(v.name, v.version, v.weight) for v in route.variants] == [("production", 1, 90.0), ("v2", 2, 10.0)]
    assert route.shadow_version == 3 and route.updated_at is not None and route.updated_at.utcoffset() is not None
    restored = registry.rollback_route("predict_purchase", actor="bob")
    assert restored.shadow_version is None and restored.salt == first.salt and restored.revision == 3
    assert [e.action for e in registry.audit(kind=AuditKind.ROUTE)] == [
        "route_rollback",
        "route_shadow",
        "route_deploy",
    ]
    assert registry.route_snapshot().token == registry.change_token()


def test_postgres_refuses_a_route_variant_of_a_version_that_does_not_exist(
    registry: Registry, registry_postgres_settings: Settings, tmp_path: Path, engine: Engine
) -> None:
    register(registry, tmp_path)
    registry.promote(NAME, 1, "bob")
    registry.deploy("predict_purchase", 1, 100, variant="control", actor="bob")
    row = {"endpoint": "predict_purchase", "position": 5, "name": "ghost", "model": NAME, "version": 9, "weight": 1.0}
    with pytest.raises(IntegrityError), engine.begin() as connection:
        schema = registry_postgres_settings.registry_schema
        connection.execution_options(schema_translate_map={None: schema}).execute(insert(RouteVariantRow), row)


def test_route_validation_on_postgres_names_the_field(registry: Registry, tmp_path: Path) -> None:
    register(registry, tmp_path)
    with pytest.raises(InvalidInputError) as raised:
        registry.set_route("predict_purchase", [RouteVariant("a", NAME, 4, 1)], actor="bob")
    assert raised.value.field == "version"


def test_concurrent_route_changes_on_postgres_get_consecutive_revisions(registry: Registry, tmp_path: Path) -> None:
    register(registry, tmp_path)
    register(registry, tmp_path)
    registry.promote(NAME, 1, "bob")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(registry.deploy, "predict_purchase", 2, 5 + i, actor="bob") for i in range(6)]
    assert [f.result().stored for f in futures] == [True] * 6
    assert sorted(r.revision for r in registry.route_history("predict_purchase")) == list(range(1, 7))


def test_a_0001_schema_is_upgraded_in_place_keeping_its_rows(
    registry: Registry, registry_postgres_settings: Settings, engine: Engine
) -> None:
    from alembic import command

    schema = registry_postgres_settings.registry_schema
    with registry._engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        command.upgrade(alembic_config(connection, schema), "0001")
    with engine.begin() as connection:
        connection.execute(
            text(
                f'INSERT INTO "{schema}".model_versions (name, version, framework, onnx_sha256, bento_tag, '
                "feature_service, metrics, data_window, params, created_at, stage, created_by) VALUES "
                "('purchase_propensity', 1, 'xgboost', :sha, 'purchase_propensity:v1-x', 'f', '{}', '{}', '{}', "
                "now(), 'production', 'alice')"
            ),
            {"sha": "0" * 64},
        )
        connection.execute(
            text(
                f'INSERT INTO "{schema}".audit_log (at, actor, action, name, version, before, after, detail) '
                "VALUES (now(), 'alice', 'promote', 'purchase_propensity', 1, NULL, NULL, 'old')"
            )
        )
    assert "routes" not in tables_in(engine, schema)
    with Registry(registry_postgres_settings) as fresh:
        assert fresh.current_revision() == "0001" and fresh.migrate() == HEAD_REVISION
        [entry] = fresh.audit()
        assert (entry.kind, entry.detail) == (AuditKind.MODEL, "old")
        assert [(v.name, v.version) for v in fresh.route("predict_purchase").variants] == [("production", 1)]
    assert {"routes", "route_variants", "route_history"} <= tables_in(engine, schema)


def test_downgrade_to_0001_and_upgrade_again_on_postgres_keeps_the_model_rows(
    registry: Registry, registry_postgres_settings: Settings, tmp_path: Path, engine: Engine
) -> None:
    from alembic import command

    register(registry, tmp_path)
    registry.promote(NAME, 1, "bob")
    registry.deploy("predict_purchase", 1, 100, variant="control", actor="bob")
    schema = registry_postgres_settings.registry_schema
    with registry._engine.begin() as connection:
        command.downgrade(alembic_config(connection, schema), "0001")
    assert tables_in(engine, schema) == {"alembic_version", "model_versions", "audit_log"}
    with Registry(registry_postgres_settings) as again:
        assert again.migrate() == HEAD_REVISION and [mv.version for mv in again.list()] == [1]
        assert not again.route("predict_purchase").stored
