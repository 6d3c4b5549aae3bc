"""`journey deploy|rollback`, `journey route ...` and `journey ab report` on the embedded profile."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from cli import app
from journey.events import EVENT_SCHEMA
from journey.registry import Registry
from journey.settings import Settings
from journey.stores.offline import OfflineTables
from journey.stores.prediction_log import PredictionRecord, open_prediction_log
from tests.factories.models import tiny_onnx

runner = CliRunner()
PP = "purchase_propensity"
EP = "predict_purchase"


@pytest.fixture
def versions(settings: Settings, tmp_path: Path) -> Settings:
    """purchase_propensity v1 (production), v2, v3 (staging)."""
    path, sha = tiny_onnx(tmp_path / "model.onnx")
    with Registry(settings) as registry:
        for _ in range(3):
            registry.register(
                name=PP,
                onnx_path=path,
                expected_sha256=sha,
                framework="xgboost",
                feature_service="purchase_propensity_v1",
                metrics={},
                data_window={},
                params={},
                actor="alice",
            )
        registry.promote(PP, 1, "alice")
    return settings


def split(settings: Settings) -> list[tuple[str, int, float]]:
    with Registry(settings) as registry:
        return [(v.name, v.version, v.weight) for v in registry.route(EP).variants]


def test_deploy_gives_the_version_its_weight_and_prints_the_route(versions: Settings) -> None:
    result = runner.invoke(app, ["deploy", f"{PP}:2", "--endpoint", EP, "--weight", "10", "--actor", "bob"])
    assert result.exit_code == 0, result.output
    assert split(versions) == [("production", 1, 90.0), ("v2", 2, 10.0)]
    assert "90.0%" in result.stdout and "10.0%" in result.stdout and "journey rollback --endpoint" in result.stdout


def test_deploy_finds_the_endpoint_from_the_model(versions: Settings) -> None:
    result = runner.invoke(app, ["deploy", f"{PP}:2", "--weight", "25", "--variant", "candidate"])
    assert result.exit_code == 0, result.output
    assert split(versions) == [("production", 1, 75.0), ("candidate", 2, 25.0)]


@pytest.mark.parametrize(
    ("arguments", "offending"),
    [
        (["deploy", f"{PP}:9", "--weight", "10"], "no version 9"),
        (["deploy", f"{PP}:two", "--weight", "10"], "'two'"),
        (["deploy", "2", "--weight", "10"], "'2'"),
        (["deploy", f"{PP}:2", "--weight", "150"], "150"),
        (["deploy", "next_action:1", "--endpoint", EP, "--weight", "10"], "'next_action'"),
        (["deploy", f"{PP}:2", "--endpoint", "predict_all", "--weight", "10"], "'predict_all'"),
        (["route", "set", "-e", EP, "--variant", "control=2"], "'control=2'"),
        (["route", "set", "-e", EP, "--variant", "a=2:1", "--variant", "a=3:1"], "'a'"),
        (["route", "set", "-e", EP, "--variant", "a=2:x"], "'x'"),
        (["route", "set", "-e", EP, "--variant", "a=2:1", "--shadow", "2"], "2"),
        (["route", "shadow", "-e", EP], "--off"),
        (["rollback", "--endpoint", EP], "no earlier route"),
    ],
)
def test_bad_input_exits_2_naming_the_offending_value(versions: Settings, arguments: list[str], offending: str) -> None:
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2, result.output
    assert offending in result.output and "Traceback" not in result.output


def test_route_set_stores_the_split_that_show_prints_as_json_and_tables(versions: Settings) -> None:
    variants = ["-v", "control=1:90", "-v", f"candidate={PP}:2:10"]
    result = runner.invoke(
        app, ["route", "set", "-e", EP, *variants, "--shadow", "3", "--experiment", "exp-1", "--salt", "s1"]
    )
    assert result.exit_code == 0, result.output
    shown = runner.invoke(app, ["route", "show", "--json", "--endpoint", EP])
    [document] = json.loads(shown.stdout)
    assert document["shares"] == {"control": 0.9, "candidate": 0.1} and document["shadow_version"] == 3
    assert (document["experiment"], document["salt"], document["revision"]) == ("exp-1", "s1", 1)
    table = runner.invoke(app, ["route", "show"])
    assert table.exit_code == 0 and "(shadow)" in table.stdout and "predict_next_action" in table.stdout


def test_route_shadow_sets_the_shadow_and_off_removes_it(versions: Settings) -> None:
    assert runner.invoke(app, ["route", "shadow", "3", "-e", EP]).exit_code == 0
    with Registry(versions) as registry:
        assert registry.route(EP).shadow_version == 3
    assert runner.invoke(app, ["route", "shadow", "--off", "-e", EP]).exit_code == 0
    with Registry(versions) as registry:
        assert registry.route(EP).shadow_version is None


def test_route_clear_goes_back_to_the_production_version(versions: Settings) -> None:
    runner.invoke(app, ["deploy", f"{PP}:2", "--weight", "10"])
    result = runner.invoke(app, ["route", "clear", "-e", EP])
    assert result.exit_code == 0, result.output
    assert "no route set" in result.stdout and split(versions) == [("production", 1, 100.0)]


def test_rollback_undoes_the_newest_change_in_one_command(versions: Settings) -> None:
    runner.invoke(app, ["deploy", f"{PP}:2", "--weight", "10"])
    runner.invoke(app, ["deploy", f"{PP}:3", "--weight", "50"])
    result = runner.invoke(app, ["rollback", "--endpoint", EP])
    assert result.exit_code == 0, result.output
    assert split(versions) == [("production", 1, 90.0), ("v2", 2, 10.0)] and "rolled back" in result.stdout
    history = runner.invoke(app, ["route", "history", "-e", EP])
    assert history.exit_code == 0 and "rollback" in history.stdout and "deploy" in history.stdout


def test_show_warns_about_an_archived_version_in_a_route(versions: Settings) -> None:
    runner.invoke(app, ["deploy", f"{PP}:2", "--weight", "10"])
    runner.invoke(app, ["models", "promote", PP, "2"])  # archives v1, still pinned by variant production
    result = runner.invoke(app, ["route", "show", "-e", EP])
    assert result.exit_code == 0 and "which is archived" in result.output


def test_help_texts_describe_every_route_command() -> None:
    for command in (["deploy"], ["rollback"], ["route", "set"], ["route", "shadow"], ["ab", "report"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, command


def test_ab_report_writes_the_report_and_says_where(versions: Settings) -> None:
    """Predictions of an experiment logged through the prediction log, purchases in the /events log."""
    runner.invoke(app, ["route", "set", "-e", EP, "-v", "control=1:50", "-v", "candidate=2:50", "--experiment", "x1"])
    start = datetime(2026, 11, 2, tzinfo=UTC)
    with open_prediction_log(versions) as log:
        for user in range(200):
            variant, version = ("control", 1) if user % 2 else ("candidate", 2)
            at = start + timedelta(minutes=user)
            log.append(PredictionRecord(f"r{user}", at, EP, user, variant, version, (user % 10) / 10, experiment="x1"))
    buyers = [u for u in range(200) if u % 3 == 0]
    events = pa.table(
        {
            "event_id": [f"e{u}" for u in buyers],
            "user_id": buyers,
            "session_id": [f"s{u}" for u in buyers],
            "item_id": [1] * len(buyers),
            "event_type": ["purchase"] * len(buyers),
            "event_timestamp": [start + timedelta(minutes=u, hours=1) for u in buyers],
            "price": [9.5] * len(buyers),
            "category_id": [1] * len(buyers),
        },
        schema=EVENT_SCHEMA,
    )
    OfflineTables(versions).write("event_log", events, "append")
    result = runner.invoke(app, ["ab", "report", "--experiment", "x1"])
    assert result.exit_code == 0, result.output
    folder = versions.reports_dir / "ab" / "x1"
    assert f"markdown: {folder / 'report.md'}" in result.stdout.replace("\n", "")
    assert (folder / "report.png").stat().st_size > 0
    document = json.loads((folder / "report.json").read_text())
    assert {v["variant"]: v["users"] for v in document["variants"]} == {"control": 100, "candidate": 100}
    assert document["srm"]["mismatch"] is False


def test_ab_report_of_an_unknown_experiment_exits_2(versions: Settings) -> None:
    OfflineTables(versions).write("event_log", EVENT_SCHEMA.empty_table(), "append")
    result = runner.invoke(app, ["ab", "report", "--experiment", "nobody"])
    assert result.exit_code == 2 and "'nobody'" in result.output
