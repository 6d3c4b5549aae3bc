"""`journey train`: the whole pipeline from a stored dataset to a registered version with its report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from cli import app
from journey.datasets.store import DatasetStore
from journey.events import EVENT_SCHEMA
from journey.registry import Registry
from journey.settings import Settings, get_settings
from tests.unit.conftest import Shop

runner = CliRunner()


@pytest.fixture
def shop_env(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The shared synthetic shop's data dir as the CLI's environment (its features are built and applied)."""
    monkeypatch.setenv("JOURNEY_DATA_DIR", str(shop.settings.data_dir))
    monkeypatch.setenv("JOURNEY_REPORTS_DIR", str(shop.settings.reports_dir))
    monkeypatch.delenv("JOURNEY_PROFILE", raising=False)
    get_settings.cache_clear()
    yield get_settings()  # type: ignore[misc]
    get_settings.cache_clear()


def _views_only(n_sessions: int) -> pa.Table:
    """Shoppers who only ever look: every propensity example has label 0."""
    start = datetime(2026, 9, 1, tzinfo=UTC)
    rows = [(s, k) for s in range(n_sessions) for k in range(3)]
    return pa.table(
        {
            "event_id": [f"e{s}-{k}" for s, k in rows],
            "user_id": [s % 50 for s, _ in rows],
            "session_id": [f"s{s}" for s, _ in rows],
            "item_id": [(s * 7 + k) % 40 for s, k in rows],
            "event_type": ["view"] * len(rows),
            "event_timestamp": [start + timedelta(hours=3 * s, minutes=k) for s, k in rows],
            "price": [9.5] * len(rows),
            "category_id": [1] * len(rows),
        },
        schema=EVENT_SCHEMA,
    )


def test_train_propensity_registers_a_version_and_says_where_the_report_went(shop_env: Settings) -> None:
    result = runner.invoke(app, ["train", "propensity", "--dataset", "shop", "--max-examples", "8000", "--promote"])
    assert result.exit_code == 0, result.output
    with Registry(shop_env) as registry:
        version = registry.get("purchase_propensity", "production")
    report = shop_env.model_reports_dir / "purchase_propensity" / str(version.version) / "report.md"
    assert str(report) in result.output.replace("\n", "")
    assert version.report_path == str(report)
    text = report.read_text()
    assert "| **xgboost** (model) |" in text and "| logistic_regression |" in text and "| cart_heuristic |" in text
    assert version.metrics["xgboost"]["roc_auc"] > version.metrics["cart_heuristic"]["roc_auc"]
    assert version.feature_service == "purchase_propensity_v1"
    assert not list(shop_env.models_dir.glob("*.onnx"))  # the registered copy lives in the BentoML store only


def test_training_on_a_dataset_whose_features_were_not_built_exits_2_naming_it(shop_env: Settings) -> None:
    result = runner.invoke(app, ["train", "next-action", "--dataset", "elsewhere"])
    assert result.exit_code == 2
    assert "'elsewhere'" in result.output and "journey features build --dataset elsewhere" in result.output


def test_a_malformed_horizon_exits_2_with_the_value(shop_env: Settings) -> None:
    result = runner.invoke(app, ["train", "propensity", "--dataset", "shop", "--horizon", "3 weeks"])
    assert result.exit_code == 2
    assert "'3 weeks'" in result.output


def test_data_without_a_single_purchase_exits_2_and_registers_nothing(settings: Settings) -> None:
    DatasetStore(settings.events_dir).write("lookers", _views_only(400), source={"kind": "test"})
    result = runner.invoke(app, ["train", "propensity", "--dataset", "lookers", "--build-features"])
    assert result.exit_code == 2, result.output
    assert "only label 0" in result.output
    with Registry(settings) as registry:
        assert registry.list() == []


def test_too_few_events_exit_2_naming_the_row_count(settings: Settings) -> None:
    DatasetStore(settings.events_dir).write("tiny", _views_only(5), source={"kind": "test"})
    result = runner.invoke(app, ["train", "propensity", "--dataset", "tiny", "--build-features"])
    assert result.exit_code == 2, result.output
    assert "training examples" in result.output


def test_train_help_lists_next_item_and_its_options() -> None:
    listing = runner.invoke(app, ["train", "--help"])
    assert listing.exit_code == 0 and "next-item" in listing.output
    result = runner.invoke(app, ["train", "next-item", "--help"])
    assert result.exit_code == 0, result.output
    assert "next_item_v1" in result.output
    for option in ("--dataset", "--seed", "--max-examples", "--promote"):
        assert option in result.output, option
