"""Alembic migrations of the model registry on a database that already holds versions (embedded profile)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from journey.registry import HEAD_REVISION, Registry, alembic_config
from journey.settings import Settings
from tests.factories.models import tiny_onnx


def _register(registry: Registry, path: Path, sha: str, framework: str) -> int:
    version = registry.register(
        name="next_item",
        onnx_path=path,
        expected_sha256=sha,
        framework=framework,
        feature_service="next_item_v1",
        metrics={},
        data_window={},
        params={},
        actor="test",
    )
    return version.version


def test_0003_keeps_the_rows_and_the_one_production_index_and_lets_onnx_versions_in(
    settings: Settings, tmp_path: Path
) -> None:
    from alembic import command

    path, sha = tiny_onnx(tmp_path / "model.onnx")
    with Registry(settings) as registry:
        first = _register(registry, path, sha, "pytorch")
        registry.promote("next_item", first, "test")
    engine = create_engine(settings.registry_database_url)
    try:
        with engine.begin() as connection:  # back to 0002, then forward again as a deployment would
            command.downgrade(alembic_config(connection), "0002")
        with Registry(settings) as registry:
            assert registry.current_revision() == "0002"
            assert registry.migrate() == HEAD_REVISION == "0003"
            assert [(v.version, v.stage.value) for v in registry.list()] == [(first, "production")]
            onnx = _register(registry, path, sha, "onnx")
        indexes = {i["name"]: i for i in inspect(engine).get_indexes("model_versions")}
        assert indexes["uq_model_versions_one_production"]["unique"]
        with engine.begin() as connection, pytest.raises(IntegrityError):  # a second production version of a name
            connection.execute(text("UPDATE model_versions SET stage = 'production' WHERE version = :v"), {"v": onnx})
    finally:
        engine.dispose()


def test_0002_refuses_an_onnx_version_so_downgrading_cannot_keep_one(settings: Settings, tmp_path: Path) -> None:
    from alembic import command

    path, sha = tiny_onnx(tmp_path / "model.onnx")
    with Registry(settings) as registry:
        _register(registry, path, sha, "onnx")
    engine = create_engine(settings.registry_database_url)
    try:
        with pytest.raises(IntegrityError), engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0002")
        with Registry(settings) as registry:
            assert registry.current_revision() == HEAD_REVISION and len(registry.list()) == 1
    finally:
        engine.dispose()
