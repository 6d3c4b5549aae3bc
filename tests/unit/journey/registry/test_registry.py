"""The model registry on the embedded profile (SQLite + a BentoML store under the test's data dir)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine, inspect

from journey.errors import ConflictError, InvalidInputError, JourneyError, NotFoundError, ServiceUnavailableError
from journey.registry import (
    HEAD_REVISION,
    MIGRATIONS_DIR,
    Base,
    ModelVersion,
    Registry,
    Stage,
    TamperedArtifactError,
    alembic_config,
)
from journey.settings import Settings
from tests.factories.models import tiny_onnx

NAME = "purchase_propensity"


@pytest.fixture
def registry(settings: Settings) -> Iterator[Registry]:
    with Registry(settings) as reg:
        yield reg


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Path, str]:
    return tiny_onnx(tmp_path / "model.onnx")


def register(registry: Registry, exported: tuple[Path, str], **overrides: Any) -> ModelVersion:
    path, sha = exported
    arguments: dict[str, Any] = {
        "name": NAME,
        "onnx_path": path,
        "expected_sha256": sha,
        "framework": "xgboost",
        "feature_service": "purchase_propensity_v1",
        "metrics": {"roc_auc": 0.81},
        "data_window": {"train": ["2026-09-01", "2026-09-20"], "test": ["2026-09-21", "2026-09-27"]},
        "params": {"max_depth": 4},
        "actor": "alice",
        **overrides,
    }
    return registry.register(**arguments)


def stored_models(settings: Settings) -> list[Path]:
    """Everything in the BentoML model store (a model directory, its `latest` pointer...)."""
    return sorted((settings.bentoml_home / "models").glob("**/*"))


def assert_nothing_stored(registry: Registry, settings: Settings) -> None:
    assert registry.list() == []
    assert registry.audit() == []
    assert stored_models(settings) == []


# ------------------------------------------------------------------------------------------------------ migrations


def test_migrate_creates_the_tables_and_version_table_on_an_empty_sqlite_database(
    registry: Registry, settings: Settings
) -> None:
    assert registry.current_revision() is None
    assert registry.migrate() == HEAD_REVISION
    engine = create_engine(settings.registry_database_url)
    try:
        assert {"model_versions", "audit_log", "alembic_version"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert registry.current_revision() == HEAD_REVISION


def test_migrate_twice_and_from_a_second_registry_is_a_no_op(registry: Registry, settings: Settings) -> None:
    registry.migrate()
    assert registry.migrate() == HEAD_REVISION
    with Registry(settings) as again:
        assert again.migrate() == HEAD_REVISION and again.list() == []


def test_head_revision_constant_is_the_newest_migration_script() -> None:
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD_REVISION
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()


def test_migrated_schema_matches_the_orm_models(registry: Registry) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    registry.migrate()
    with registry._engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_every_operation_migrates_a_fresh_database_on_first_use(registry: Registry) -> None:
    assert registry.list() == []
    assert registry.current_revision() == HEAD_REVISION


# -------------------------------------------------------------------------------------------------------- register


def test_register_numbers_versions_per_name_from_one(registry: Registry, exported: tuple[Path, str]) -> None:
    first, second = register(registry, exported), register(registry, exported)
    other = register(registry, exported, name="next_action", framework="pytorch")
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert [(mv.name, mv.version) for mv in registry.list()] == [("next_action", 1), (NAME, 1), (NAME, 2)]


def test_register_records_the_version_as_staging_with_its_provenance(
    registry: Registry, exported: tuple[Path, str]
) -> None:
    mv = register(registry, exported, report_path="reports/models/purchase_propensity/1")
    assert mv.stage is Stage.STAGING and mv.created_by == "alice" and mv.framework == "xgboost"
    assert mv.onnx_sha256 == exported[1] and mv.metrics == {"roc_auc": 0.81}
    assert mv.data_window["train"] == ["2026-09-01", "2026-09-20"] and mv.params == {"max_depth": 4}
    assert mv.report_path == "reports/models/purchase_propensity/1"
    assert mv.created_at.utcoffset() is not None and mv.created_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert mv.git_commit is None or len(mv.git_commit) == 40
    assert registry.get(NAME, 1) == mv


def test_register_copies_the_artifact_into_the_bentoml_store_under_the_rows_tag(
    registry: Registry, settings: Settings, exported: tuple[Path, str]
) -> None:
    mv = register(registry, exported)
    path = registry.artifact_path(mv)
    assert path.is_relative_to(settings.bentoml_home / "models" / NAME)
    assert path.read_bytes() == exported[0].read_bytes()
    assert mv.bento_tag.startswith(f"{NAME}:v1-") and path.parent.name == mv.bento_tag.split(":")[1]


def test_register_writes_a_register_audit_row(registry: Registry, exported: tuple[Path, str]) -> None:
    mv = register(registry, exported)
    [entry] = registry.audit()
    assert (entry.action, entry.actor, entry.name, entry.version) == ("register", "alice", NAME, 1)
    assert entry.before is None and entry.after == {
        "stage": "staging",
        "onnx_sha256": mv.onnx_sha256,
        "bento_tag": mv.bento_tag,
    }


def test_register_stores_numpy_metrics_as_numbers_and_nan_as_null(
    registry: Registry, exported: tuple[Path, str]
) -> None:
    mv = register(registry, exported, metrics={"auc": np.float32(0.5), "undefined": float("nan"), "n": np.int64(3)})
    assert registry.get(NAME, mv.version).metrics == {"auc": 0.5, "undefined": None, "n": 3}


def test_concurrent_registrations_get_distinct_consecutive_versions(
    registry: Registry, exported: tuple[Path, str]
) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(register, registry, exported) for _ in range(4)]
    assert sorted(future.result().version for future in futures) == [1, 2, 3, 4]


@pytest.mark.parametrize("change", ["bytes changed after export", "wrong expected sha"])
def test_a_tampered_file_is_refused_with_nothing_stored(
    registry: Registry, settings: Settings, exported: tuple[Path, str], change: str
) -> None:
    path, sha = exported
    if change == "bytes changed after export":
        tiny_onnx(path, scale=3.0)  # a valid model, just not the one that was exported and checked
    else:
        sha = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(TamperedArtifactError) as raised:
        register(registry, (path, sha))
    assert raised.value.field == "onnx_sha256" and raised.value.exit_code == 2 and raised.value.http_status == 422
    assert raised.value.actual == hashlib.sha256(path.read_bytes()).hexdigest() and raised.value.expected == sha
    assert_nothing_stored(registry, settings)


def test_a_corrupted_file_that_is_not_onnx_is_refused_with_nothing_stored(
    registry: Registry, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07 this is not a protobuf model \xff\xfe")
    with pytest.raises(InvalidInputError, match="not a loadable ONNX model") as raised:
        register(registry, (path, hashlib.sha256(path.read_bytes()).hexdigest()))
    assert raised.value.field == "onnx_path" and not isinstance(raised.value, TamperedArtifactError)
    assert_nothing_stored(registry, settings)


def test_a_missing_file_is_refused_naming_it(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist") as raised:
        register(registry, (tmp_path / "gone.onnx", "0" * 64))
    assert raised.value.field == "onnx_path"


@pytest.mark.parametrize(
    ("field", "value"), [("name", "Purchase Propensity"), ("framework", "sklearn"), ("actor", " ")]
)
def test_invalid_fields_are_refused_naming_the_field(
    registry: Registry, settings: Settings, exported: tuple[Path, str], field: str, value: str
) -> None:
    with pytest.raises(InvalidInputError) as raised:
        register(registry, exported, **{field: value})
    assert raised.value.field == field
    assert_nothing_stored(registry, settings)


def test_a_failed_bentoml_save_leaves_no_row(
    registry: Registry, settings: Settings, exported: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_args: object) -> str:
        raise JourneyError("disk full")

    monkeypatch.setattr(registry._artifacts, "save", fail)  # the BentoML save of ArtifactStore
    with pytest.raises(JourneyError, match="disk full"):
        register(registry, exported)
    assert_nothing_stored(registry, settings)


def test_a_failure_after_the_bentoml_save_removes_the_saved_model(
    registry: Registry, settings: Settings, exported: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from journey import registry as module

    def fail(self: object) -> ModelVersion:
        raise RuntimeError("lost the database mid-commit")

    monkeypatch.setattr(module.ModelVersionRow, "detached", fail)
    with pytest.raises(RuntimeError, match="mid-commit"):
        register(registry, exported)
    monkeypatch.undo()
    assert_nothing_stored(registry, settings)


# ---------------------------------------------------------------------------------------------------------- stages


def production(registry: Registry, name: str = NAME) -> list[int]:
    return [mv.version for mv in registry.list(name=name, stage="production")]


def test_promote_makes_one_production_version_and_archives_the_one_it_replaces(
    registry: Registry, exported: tuple[Path, str]
) -> None:
    for _ in range(3):
        register(registry, exported)
    registry.promote(NAME, 1, "bob")
    promoted = registry.promote(NAME, 2, "bob")
    assert promoted.stage is Stage.PRODUCTION and production(registry) == [2]
    assert [mv.stage for mv in registry.list(name=NAME)] == [Stage.ARCHIVED, Stage.PRODUCTION, Stage.STAGING]


def test_promote_audits_every_stage_change_with_before_and_after(
    registry: Registry, exported: tuple[Path, str]
) -> None:
    register(registry, exported)
    register(registry, exported)
    registry.promote(NAME, 1, "bob")
    registry.promote(NAME, 2, "carol")
    changes = [(e.action, e.version, e.actor, e.before, e.after) for e in registry.audit() if e.action != "register"]
    assert changes == [
        ("promote", 2, "carol", {"stage": "staging"}, {"stage": "production"}),
        ("archive", 1, "carol", {"stage": "production"}, {"stage": "archived"}),
        ("promote", 1, "bob", {"stage": "staging"}, {"stage": "production"}),
    ]
    assert registry.audit(name=NAME, version=1)[0].detail == "superseded by version 2"


def test_promote_of_the_production_version_changes_nothing(registry: Registry, exported: tuple[Path, str]) -> None:
    register(registry, exported)
    registry.promote(NAME, "latest", "bob")
    before = registry.audit()
    assert registry.promote(NAME, "production", "bob").version == 1
    assert registry.audit() == before and production(registry) == [1]


def test_promoting_an_archived_version_rolls_back_to_it(registry: Registry, exported: tuple[Path, str]) -> None:
    register(registry, exported)
    register(registry, exported)
    registry.promote(NAME, 1, "bob")
    registry.promote(NAME, 2, "bob")
    rolled_back = registry.promote(NAME, 1, "bob")
    assert rolled_back.stage is Stage.PRODUCTION and production(registry) == [1]
    assert registry.get(NAME, 2).stage is Stage.ARCHIVED
    assert registry.audit(name=NAME, version=1)[0].detail == "rollback to an archived version"


def test_promote_refuses_a_version_whose_stored_artifact_was_modified(
    registry: Registry, exported: tuple[Path, str]
) -> None:
    register(registry, exported)
    register(registry, exported)
    registry.promote(NAME, 1, "bob")
    tiny_onnx(registry.artifact_path(registry.get(NAME, 2)), scale=9.0)
    before = registry.audit()
    with pytest.raises(TamperedArtifactError):
        registry.promote(NAME, 2, "bob")
    assert production(registry) == [1] and registry.audit() == before


def test_stage_changes_of_one_name_leave_other_names_alone(registry: Registry, exported: tuple[Path, str]) -> None:
    register(registry, exported)
    register(registry, exported, name="next_action", framework="pytorch")
    registry.promote(NAME, 1, "bob")
    registry.promote("next_action", 1, "bob")
    assert production(registry) == [1] and production(registry, "next_action") == [1]


def test_archive_of_a_staging_version_is_audited(registry: Registry, exported: tuple[Path, str]) -> None:
    register(registry, exported)
    assert registry.archive(NAME, 1, "bob").stage is Stage.ARCHIVED
    entry = registry.audit()[0]
    assert (entry.action, entry.before, entry.after) == ("archive", {"stage": "staging"}, {"stage": "archived"})


def test_archive_of_the_production_version_leaves_none_and_warns(
    registry: Registry, exported: tuple[Path, str], caplog: pytest.LogCaptureFixture
) -> None:
    register(registry, exported)
    registry.promote(NAME, 1, "bob")
    with caplog.at_level(logging.WARNING, logger="journey.registry"):
        registry.archive(NAME, 1, "bob")
    assert production(registry) == []
    assert any(r.levelno == logging.WARNING and "no production version" in r.getMessage() for r in caplog.records)
    with pytest.raises(NotFoundError, match="no production version"):
        registry.get(NAME, "production")


def test_the_database_itself_refuses_a_second_production_version(
    registry: Registry, exported: tuple[Path, str]
) -> None:
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError

    from journey.registry import ModelVersionRow

    register(registry, exported)
    register(registry, exported)
    registry.promote(NAME, 1, "bob")
    with pytest.raises(IntegrityError), registry._engine.begin() as connection:
        connection.execute(update(ModelVersionRow).where(ModelVersionRow.version == 2).values(stage="production"))


def test_attach_report_records_the_path_with_an_audit_row(registry: Registry, exported: tuple[Path, str]) -> None:
    register(registry, exported)
    mv = registry.attach_report(NAME, 1, "reports/models/purchase_propensity/1/report.md")
    assert mv.report_path == "reports/models/purchase_propensity/1/report.md"
    entry = registry.audit()[0]
    assert (entry.action, entry.actor, entry.before) == ("attach_report", "alice", {"report_path": None})


# ----------------------------------------------------------------------------------------------------------- reads


def test_get_resolves_latest_production_and_numbers_given_as_text(
    registry: Registry, exported: tuple[Path, str]
) -> None:
    register(registry, exported)
    register(registry, exported)
    registry.promote(NAME, 1, "bob")
    assert registry.get(NAME).version == 2 and registry.get(NAME, "latest").version == 2
    assert registry.get(NAME, "production").version == 1 and registry.get(NAME, "1").version == 1


def test_an_unknown_version_raises_not_found_naming_it(registry: Registry, exported: tuple[Path, str]) -> None:
    register(registry, exported)
    with pytest.raises(NotFoundError, match=r"has no version 7; versions: 1 \(staging\)") as raised:
        registry.promote(NAME, 7, "bob")
    assert raised.value.exit_code == 2 and raised.value.http_status == 404


def test_an_unknown_name_raises_not_found_naming_it(registry: Registry) -> None:
    with pytest.raises(NotFoundError, match="no model named 'churn'"):
        registry.get("churn", 1)


@pytest.mark.parametrize("version", ["v2", "0", "newest", -1])
def test_a_malformed_version_is_an_input_error_naming_it(
    registry: Registry, exported: tuple[Path, str], version: object
) -> None:
    register(registry, exported)
    with pytest.raises(InvalidInputError) as raised:
        registry.get(NAME, version)  # type: ignore[arg-type]
    assert raised.value.field == "version" and raised.value.value == version


def test_list_by_an_unknown_stage_is_an_input_error(registry: Registry) -> None:
    with pytest.raises(InvalidInputError, match="unknown stage 'live'"):
        registry.list(stage="live")


def test_audit_lists_newest_first_and_honours_the_limit(registry: Registry, exported: tuple[Path, str]) -> None:
    register(registry, exported)
    registry.promote(NAME, 1, "bob")
    registry.archive(NAME, 1, "bob")
    assert [e.action for e in registry.audit()] == ["archive", "promote", "register"]
    assert [e.action for e in registry.audit(limit=1)] == ["archive"]


def test_as_dict_is_plain_json(registry: Registry, exported: tuple[Path, str]) -> None:
    mv = register(registry, exported)
    document = json.loads(json.dumps(mv.as_dict()))
    assert document["stage"] == "staging" and document["created_at"].endswith("+00:00")
    assert json.loads(json.dumps(registry.audit()[0].as_dict()))["action"] == "register"


# ------------------------------------------------------------------------------------------------------- artifacts


def test_artifact_path_detects_a_file_modified_inside_the_bentoml_store(
    registry: Registry, exported: tuple[Path, str]
) -> None:
    mv = register(registry, exported)
    path = registry.artifact_path(mv)
    tiny_onnx(path, scale=5.0)
    with pytest.raises(TamperedArtifactError, match="modified") as raised:
        registry.artifact_path(mv)
    assert raised.value.field == "onnx_sha256" and raised.value.expected == mv.onnx_sha256


def test_artifact_path_detects_a_file_removed_from_the_bentoml_store(
    registry: Registry, exported: tuple[Path, str]
) -> None:
    mv = register(registry, exported)
    registry.artifact_path(mv).unlink()
    with pytest.raises(TamperedArtifactError) as raised:
        registry.artifact_path(mv)
    assert raised.value.actual == "missing"


def test_artifact_path_of_a_model_absent_from_the_store_names_the_store(
    registry: Registry, settings: Settings, exported: tuple[Path, str]
) -> None:
    import shutil

    mv = register(registry, exported)
    shutil.rmtree(settings.bentoml_home / "models" / NAME)
    with pytest.raises(NotFoundError, match="not in the store"):
        registry.artifact_path(mv)


def test_concurrent_version_conflicts_surface_as_conflict_after_retries(
    registry: Registry, exported: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import IntegrityError

    def always_taken(*_args: object) -> ModelVersion:
        raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))

    monkeypatch.setattr(registry, "_insert", always_taken)
    with pytest.raises(ConflictError, match="concurrent registrations"):
        register(registry, exported)


def test_an_unreachable_postgres_registry_is_service_unavailable_naming_it(settings: Settings) -> None:
    unreachable = settings.model_copy(update={"registry_url": "postgresql+psycopg://postgres:secret@127.0.0.1:1/test"})
    with Registry(unreachable) as registry, pytest.raises(ServiceUnavailableError, match=r"127\.0\.0\.1:1") as raised:
        registry.list()
    assert "secret" not in str(raised.value) and raised.value.exit_code == 1
