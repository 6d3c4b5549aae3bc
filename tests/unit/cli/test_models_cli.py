"""The `journey models` commands on the embedded profile (SQLite registry + BentoML store in the test's data dir)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from journey.registry import Registry, Stage
from journey.settings import Settings
from tests.factories.models import tiny_onnx

runner = CliRunner()
NAME = "purchase_propensity"


@pytest.fixture
def two_versions(settings: Settings, tmp_path: Path) -> Settings:
    """purchase_propensity versions 1 and 2, both in staging."""
    path, sha = tiny_onnx(tmp_path / "model.onnx")
    with Registry(settings) as registry:
        for _ in range(2):
            registry.register(
                name=NAME,
                onnx_path=path,
                expected_sha256=sha,
                framework="xgboost",
                feature_service="purchase_propensity_v1",
                metrics={"roc_auc": 0.81},
                data_window={"train": ["2026-09-01", "2026-09-20"]},
                params={"max_depth": 4},
                actor="alice",
            )
    return settings


def stages(settings: Settings) -> dict[int, Stage]:
    with Registry(settings) as registry:
        return {mv.version: mv.stage for mv in registry.list(name=NAME)}


def test_list_shows_every_version_and_where_the_registry_is(two_versions: Settings) -> None:
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    assert f"registry: sqlite:///{two_versions.data_dir / 'registry.db'}" in result.output.replace("\n", "")
    assert result.output.count(NAME) == 2 and "2 version(s)" in result.output


def test_list_filters_by_stage(two_versions: Settings) -> None:
    runner.invoke(app, ["models", "promote", NAME, "2", "--actor", "bob"])
    result = runner.invoke(app, ["models", "list", "--stage", "production"])
    assert result.exit_code == 0, result.output
    assert "1 version(s)" in result.output and "production" in result.output


def test_list_with_an_unknown_stage_exits_2_naming_it(two_versions: Settings) -> None:
    result = runner.invoke(app, ["models", "list", "--stage", "live"])
    assert result.exit_code == 2 and "'live'" in result.output


def test_show_prints_the_version_with_metrics_and_audit_as_json(two_versions: Settings) -> None:
    result = runner.invoke(app, ["models", "show", NAME, "1"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["model"]["version"] == 1 and document["model"]["metrics"] == {"roc_auc": 0.81}
    assert [entry["action"] for entry in document["audit"]] == ["register"]
    assert document["artifact"].endswith(".onnx") and Path(document["artifact"]).is_file()


def test_promote_moves_a_version_to_production_and_archives_the_previous(two_versions: Settings) -> None:
    first = runner.invoke(app, ["models", "promote", NAME, "1", "--actor", "bob"])
    second = runner.invoke(app, ["models", "promote", NAME, "2", "--actor", "bob"])
    assert first.exit_code == 0 and second.exit_code == 0, second.output
    assert "version 2 is now in production; version 1 archived" in second.output
    assert stages(two_versions) == {1: Stage.ARCHIVED, 2: Stage.PRODUCTION}


def test_promote_records_the_os_user_when_no_actor_is_given(
    two_versions: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cli.models.getpass.getuser", lambda: "dave")
    assert runner.invoke(app, ["models", "promote", NAME, "1"]).exit_code == 0
    with Registry(two_versions) as registry:
        assert registry.audit(limit=1)[0].actor == "dave"


def test_archive_of_the_production_version_warns_that_none_is_left(two_versions: Settings) -> None:
    runner.invoke(app, ["models", "promote", NAME, "1", "--actor", "bob"])
    result = runner.invoke(app, ["models", "archive", NAME, "production", "--actor", "bob"])
    assert result.exit_code == 0, result.output
    assert "version 1 is archived" in result.output and "no production version now" in result.output
    assert stages(two_versions) == {1: Stage.ARCHIVED, 2: Stage.STAGING}


def test_audit_lists_the_changes(two_versions: Settings) -> None:
    runner.invoke(app, ["models", "promote", NAME, "2", "--actor", "bob"])
    result = runner.invoke(app, ["models", "audit", "--name", NAME])
    assert result.exit_code == 0, result.output
    assert "promote" in result.output and "register" in result.output and "bob" in result.output


@pytest.mark.parametrize("command", ["show", "promote", "archive"])
def test_an_unknown_version_exits_2_naming_it(two_versions: Settings, command: str) -> None:
    result = runner.invoke(app, ["models", command, NAME, "9"])
    assert result.exit_code == 2
    assert "has no version 9" in result.output and NAME in result.output


def test_a_malformed_version_exits_2_naming_it(two_versions: Settings) -> None:
    result = runner.invoke(app, ["models", "show", NAME, "v1"])
    assert result.exit_code == 2 and "'v1'" in result.output
