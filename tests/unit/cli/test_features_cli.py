"""The `journey features` commands end to end on the embedded profile (no services needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from journey.settings import Settings

runner = CliRunner()


@pytest.fixture
def applied(settings: Settings) -> Settings:
    result = runner.invoke(app, ["data", "generate", "-d", "demo", "--events", "3000"])
    assert result.exit_code == 0, result.output
    for command in (["features", "build", "-d", "demo"], ["features", "apply"], ["features", "materialize"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, (command, result.output)
    return settings


def test_build_apply_materialize_then_get_reads_a_user(applied: Settings) -> None:
    result = runner.invoke(
        app, ["features", "get", "--service", "next_action_v1", "--entity", "user_id=1", "--entity", "session_id=none"]
    )
    assert result.exit_code == 0, result.output
    assert "views_30d" in result.output and "session_events" in result.output


def test_build_says_where_each_view_went(applied: Settings) -> None:
    result = runner.invoke(app, ["features", "build", "-d", "demo"])
    assert result.exit_code == 0
    for view in ("user_activity", "item_popularity", "session_activity"):
        assert str(applied.offline_dir / f"{view}.parquet") in result.output.replace("\n", "")


def test_push_reports_rejects_with_exit_2(applied: Settings, tmp_path: Path) -> None:
    good = {
        "event_id": "a",
        "user_id": 1,
        "session_id": "s-1",
        "item_id": 2,
        "event_type": "view",
        "event_timestamp": "2026-09-20T10:00:00+00:00",
    }
    bad = {**good, "event_id": "b", "event_type": "wishlist"}
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(json.dumps(e) for e in (good, bad)))
    result = runner.invoke(app, ["features", "push", str(source)])
    assert result.exit_code == 2
    assert "accepted 1, rejected 1" in result.output and "wishlist" in result.output


def test_push_of_a_line_that_is_not_json_names_the_line(applied: Settings, tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    source.write_text("{not json}\n")
    result = runner.invoke(app, ["features", "push", str(source)])
    assert result.exit_code == 2 and "line 1" in result.output


def test_get_with_an_unknown_service_exits_2_naming_it(applied: Settings) -> None:
    result = runner.invoke(app, ["features", "get", "--service", "propensity_v7", "--entity", "user_id=1"])
    assert result.exit_code == 2 and "propensity_v7" in result.output


def test_materialize_with_a_bad_end_time_exits_2(applied: Settings) -> None:
    result = runner.invoke(app, ["features", "materialize", "--end", "yesterday"])
    assert result.exit_code == 2 and "yesterday" in result.output


def test_build_on_an_empty_dataset_exits_2_saying_it_holds_no_events(settings: Settings) -> None:
    from journey.datasets import DatasetStore
    from journey.events import EVENT_SCHEMA

    DatasetStore(settings.events_dir).write("empty", EVENT_SCHEMA.empty_table(), source={"kind": "test"})
    result = runner.invoke(app, ["features", "build", "-d", "empty"])
    assert result.exit_code == 2, result.output
    assert "'empty' holds no events" in result.output and "Traceback" not in result.output
    assert not (settings.offline_dir / "user_activity.parquet").exists()


def test_build_on_a_missing_dataset_exits_2_naming_the_known_ones(settings: Settings) -> None:
    result = runner.invoke(app, ["features", "build", "-d", "nowhere"])
    assert result.exit_code == 2 and "'nowhere' not found" in result.output
