"""`journey train`: the whole pipeline from a stored dataset to a registered version with its report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

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
    # 8,000 examples are too few for XGBoost to beat logistic regression on the validation days: forced past the gate
    reason = "unit test: too few examples for the gate"
    args = ["train", "propensity", "--dataset", "shop", "--max-examples", "8000", "--force-promote", "--reason", reason]
    result = runner.invoke(app, args)
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
    for option in ("--dataset", "--seed", "--max-examples", "--promote", "--force-promote", "--reason"):
        assert option in result.output, option


def test_train_next_item_kind_sknn_registers_a_next_item_version_beside_every_baseline(shop_env: Settings) -> None:
    result = runner.invoke(
        app, ["train", "next-item", "--dataset", "shop", "--max-examples", "6000", "--kind", "sknn", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    with Registry(shop_env) as registry:
        version = registry.get("next_item", "latest")
    assert version.params["kind"] == "sknn" and version.params["input_spec"]["top_k"] == 50
    assert set(version.params["index"]) >= {"sessions", "posting_entries", "bytes"}
    assert version.metrics["primary"] == "sknn"
    for name in ("sknn", "popularity", "markov", "covisitation"):  # the model, then every other baseline
        assert {"hit_rate@10", "hit_rate@20", "mrr@20"} <= set(version.metrics[name]), name
    text = Path(version.report_path or "").read_text()
    assert "| **sknn** (model) |" in text and "| markov |" in text and "| covisitation |" in text


def test_an_unknown_next_item_kind_exits_2_naming_the_known_ones(shop_env: Settings) -> None:
    result = runner.invoke(app, ["train", "next-item", "--dataset", "shop", "--kind", "item2vec"])
    assert result.exit_code == 2
    assert "'item2vec'" in result.output and "sknn" in result.output and "auto" in result.output


def test_next_item_help_names_every_kind() -> None:
    from training.models.next_item import KINDS

    result = runner.invoke(app, ["train", "next-item", "--help"])
    assert result.exit_code == 0
    assert "--kind" in result.output
    assert all(name in result.output for name in KINDS)


def test_a_config_file_with_an_unknown_key_exits_2_naming_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "sasrec.yaml"
    path.write_text("max_steps: 300\nlayer: 2\n", encoding="utf-8")
    result = runner.invoke(app, ["train", "next-item", "--kind", "sasrec", "--config", str(path)])
    assert result.exit_code == 2
    flat = result.output.replace("\n", "")
    assert str(path) in flat and "layer: unknown key" in flat


def test_a_bad_option_value_exits_2_naming_the_key() -> None:
    result = runner.invoke(app, ["train", "next-action", "--arch", "lstm"])
    assert result.exit_code == 2 and "arch" in result.output
    result = runner.invoke(app, ["train", "next-item", "--kind", "sknn", "--max-steps", "100"])
    assert result.exit_code == 2 and "max_steps: unknown key" in result.output.replace("\n", "")


def test_train_help_names_the_budget_config_and_search_options() -> None:
    for command, options in (
        ("next-item", ("--config", "--max-steps", "--eval-every", "--batch-size", "--search", "--search-seconds")),
        ("next-action", ("--config", "--arch", "--max-steps", "--batch-size")),
    ):
        result = runner.invoke(app, ["train", command, "--help"])
        assert result.exit_code == 0 and all(option in result.output for option in options), command


@pytest.mark.slow  # the training set, a short SASRec fit, every baseline, the export
def test_train_next_item_kind_sasrec_with_a_config_and_options_registers_them(
    shop_env: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "sasrec.yaml"
    path.write_text("embedding_dim: 16\nlayers: 1\nmax_steps: 100\nholdout_rows: 64\n", encoding="utf-8")
    args = ["train", "next-item", "--dataset", "shop", "--max-examples", "6000", "--kind", "sasrec", "--seed", "3"]
    result = runner.invoke(app, [*args, "--config", str(path), "--max-steps", "40", "--eval-every", "10"])
    assert result.exit_code == 0, result.output
    with Registry(shop_env) as registry:
        version = registry.get("next_item", "latest")
    assert version.params["kind"] == "sasrec" and version.metrics["primary"] == "sasrec"
    config = version.params["config"]
    assert (config["embedding_dim"], config["layers"], config["max_steps"], config["eval_every"]) == (16, 1, 40, 10)
    assert 0 < version.params["best_step"] <= version.params["steps_run"] <= 40
    assert {"hit_rate@20", "mrr@20"} <= set(version.metrics["sknn"])


@pytest.mark.slow  # every kind fitted (two networks with short budgets) and the winner exported
def test_train_next_item_kind_auto_registers_the_best_kind_on_validation_and_reports_the_choice(
    shop_env: Settings,
) -> None:
    args = ["train", "next-item", "--dataset", "shop", "--max-examples", "6000", "--kind", "auto", "--seed", "3"]
    result = runner.invoke(app, [*args, "--max-steps", "60", "--eval-every", "20"])
    assert result.exit_code == 0, result.output
    with Registry(shop_env) as registry:
        version = registry.get("next_item", "latest")
    selection = version.params["selection"]
    assert version.params["kind"] == selection["chosen"] == version.metrics["primary"]
    assert set(selection["validation"]) == {"gru4rec", "sasrec", "popularity", "markov", "covisitation", "sknn"}
    text = Path(version.report_path or "").read_text()
    assert "## Kind selection" in text and f"**{selection['chosen']}** (served)" in text
