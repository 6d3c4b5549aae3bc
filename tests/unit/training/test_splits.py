"""The time split: later days judge the model, never a shuffle of the same days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from journey.errors import InvalidInputError
from training.splits import time_split

T0 = datetime(2026, 9, 1, tzinfo=UTC)


def _frame(times: list[datetime]) -> pd.DataFrame:
    return pd.DataFrame({"row_id": range(len(times)), "event_timestamp": pd.to_datetime(times, utc=True)})


def _hourly(days: int, per_day: int = 24) -> pd.DataFrame:
    return _frame([T0 + timedelta(days=d, hours=h) for d in range(days) for h in range(per_day)])


def test_every_validation_row_is_after_every_train_row_and_before_every_test_row() -> None:
    split = time_split(_hourly(20))
    assert split.train["event_timestamp"].max() < split.valid["event_timestamp"].min()
    assert split.valid["event_timestamp"].max() < split.test["event_timestamp"].min()
    assert sum(split.summary.rows.values()) == 20 * 24


def test_long_data_is_cut_at_midnights() -> None:
    split = time_split(_hourly(20))
    assert split.summary.method == "days"
    assert split.summary.valid_start.endswith("T00:00:00+00:00")
    assert split.summary.test_start.endswith("T00:00:00+00:00")
    assert split.summary.rows == {"train": 14 * 24, "valid": 3 * 24, "test": 3 * 24}


def test_a_short_sample_is_cut_at_time_quantiles() -> None:
    frame = _frame([T0 + timedelta(minutes=m) for m in range(600)])
    split = time_split(frame)
    assert split.summary.method == "time_quantiles"
    assert split.summary.rows["test"] == pytest.approx(90, abs=2)


def test_too_few_rows_for_three_parts_is_refused_naming_rows() -> None:
    with pytest.raises(InvalidInputError) as caught:
        time_split(_hourly(1, per_day=10))
    assert caught.value.field == "rows"
    assert "10 training examples" in str(caught.value)


def test_fractions_that_leave_no_training_days_are_refused() -> None:
    with pytest.raises(InvalidInputError) as caught:
        time_split(_hourly(20), valid_fraction=0.5, test_fraction=0.5)
    assert caught.value.field == "split"
