"""The propensity trainer on a real point-in-time training set of a small synthetic shop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from journey.errors import InvalidInputError
from tests.unit.conftest import Shop
from training.export import PARITY_BATCH_SIZES, read_metadata
from training.models.propensity import PropensityConfig, feature_columns, train_propensity
from training.runs import TrainingRun

FAST = PropensityConfig(max_trees=60, early_stopping_rounds=10)


@pytest.fixture(scope="module")
def run(shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    return train_propensity(shop.propensity, tmp_path_factory.mktemp("p") / "p.onnx", config=FAST, seed=3)


def test_export_matches_xgboost_at_every_checked_batch_size(run: TrainingRun) -> None:
    assert set(PARITY_BATCH_SIZES) <= set(run.export.max_abs_diff)
    assert run.export.parity_max_abs_diff <= 1e-4


def test_feature_order_is_stored_in_the_model_and_excludes_keys_and_labels(run: TrainingRun) -> None:
    stored = read_metadata(run.export.path)["journey.feature_order"]
    assert stored.startswith('["views_1d"')
    for column in ("user_id", "item_id", "label", "request_ts", "candidate_item_id", "row_id"):
        assert f'"{column}"' not in stored
    assert run.feature_order[-1] == "candidate_price"
    assert "candidate_in_cart" in run.feature_order


def test_model_and_both_baselines_are_scored_on_the_same_test_rows(run: TrainingRun) -> None:
    assert [c.name for c in run.candidates] == ["xgboost", "logistic_regression", "cart_heuristic"]
    assert all(c.scores.shape == run.labels.shape for c in run.candidates)
    assert run.split.rows["test"] == len(run.labels)


def test_same_seed_gives_the_same_model_file(shop: Shop, run: TrainingRun, tmp_path: Path) -> None:
    again = train_propensity(shop.propensity, tmp_path / "again.onnx", config=FAST, seed=3)
    assert again.export.sha256 == run.export.sha256
    np.testing.assert_array_equal(again.model.scores, run.model.scores)


def test_training_data_with_a_single_class_is_refused_naming_the_label(shop: Shop, tmp_path: Path) -> None:
    no_purchases = shop.propensity.assign(label=0)
    with pytest.raises(InvalidInputError) as caught:
        train_propensity(no_purchases, tmp_path / "x.onnx", config=FAST)
    assert caught.value.field == "label"
    assert "only label 0" in str(caught.value)
    assert not (tmp_path / "x.onnx").exists()


def test_too_few_rows_are_refused_naming_rows(shop: Shop, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as caught:
        train_propensity(shop.propensity.head(30), tmp_path / "x.onnx", config=FAST)
    assert caught.value.field == "rows"


def test_a_frame_of_another_service_is_refused(shop: Shop, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as caught:
        train_propensity(shop.next_action, tmp_path / "x.onnx", config=FAST)
    assert caught.value.field == "frame"


def test_feature_columns_put_the_request_price_last() -> None:
    frame = pd.DataFrame(columns=["row_id", "user_id", "candidate_price", "views_1d", "label", "request_hour"])
    assert feature_columns(frame) == ["views_1d", "request_hour", "candidate_price"]
