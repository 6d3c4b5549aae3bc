"""Pipeline guards that keep a training run honest before any model is fitted."""

from __future__ import annotations

from datetime import timedelta

import pytest

from journey.errors import InvalidInputError
from journey.settings import Settings
from training.features import record_build
from training.pipeline import check_features_built, parse_horizon


def test_training_before_any_feature_build_is_refused(settings: Settings) -> None:
    with pytest.raises(InvalidInputError, match="holds features of nothing") as caught:
        check_features_built(settings, "demo")
    assert caught.value.field == "dataset"


def test_training_on_another_dataset_than_the_built_one_is_refused(settings: Settings) -> None:
    record_build(settings, "demo", 100)
    check_features_built(settings, "demo")
    with pytest.raises(InvalidInputError, match="dataset 'demo', not of 'rees46'"):
        check_features_built(settings, "rees46")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("session", "session"), ("30m", timedelta(minutes=30)), ("6h", timedelta(hours=6)), ("7d", timedelta(days=7))],
)
def test_horizon_parses_session_or_a_duration(text: str, expected: object) -> None:
    assert parse_horizon(text) == expected


@pytest.mark.parametrize("text", ["0d", "7w", "d", "-1h", "1.5h"])
def test_a_malformed_horizon_is_refused_with_the_value(text: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_horizon(text)
    assert caught.value.value == text


def test_a_next_item_kind_is_checked_before_any_work_and_only_for_next_item() -> None:
    from training.pipeline import _trainer_options

    assert _trainer_options("next-item", "sknn") == {"kind": "sknn"}
    assert _trainer_options("next-item", None) == {}
    with pytest.raises(InvalidInputError) as caught:
        _trainer_options("next-item", "item2vec")
    assert caught.value.field == "kind"
    with pytest.raises(InvalidInputError) as caught:
        _trainer_options("propensity", "sknn")
    assert caught.value.field == "kind"
