"""Time-based train/validation/test split: models are judged on days after the ones they learnt from.

A random split would leak the future (a user's later sessions teaching the model about their earlier ones) and
overstate every metric. Boundaries fall on whole UTC days when the data spans enough days; a short sample (the
real public samples cover a few hours to days) is cut at time quantiles instead, and the summary says which.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final, cast

import pandas as pd

from journey.errors import InvalidInputError

TIMESTAMP: Final = "event_timestamp"
MIN_DAYS_FOR_DAY_SPLIT: Final = 5


@dataclass(frozen=True)
class SplitSummary:
    """Where the cuts are and how many rows each part got (written into reports and the registry)."""

    method: str  # "days" or "time_quantiles"
    train_start: str
    valid_start: str
    test_start: str
    test_end: str
    rows: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TimeSplit:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    summary: SplitSummary


def _cuts(times: pd.Series, valid_fraction: float, test_fraction: float) -> tuple[str, pd.Timestamp, pd.Timestamp]:
    unique_days = sorted(set(times.dt.floor("D")))
    if len(unique_days) >= MIN_DAYS_FOR_DAY_SPLIT:
        n = len(unique_days)
        n_test = max(1, round(n * test_fraction))
        n_valid = max(1, round(n * valid_fraction))
        return "days", unique_days[n - n_test - n_valid], unique_days[n - n_test]
    # pandas types a quantile of a datetime Series as a float; it is a Timestamp
    valid_at = cast(pd.Timestamp, times.quantile(1 - valid_fraction - test_fraction))
    test_at = cast(pd.Timestamp, times.quantile(1 - test_fraction))
    return "time_quantiles", valid_at, test_at


def time_split(
    frame: pd.DataFrame, *, valid_fraction: float = 0.15, test_fraction: float = 0.15, min_rows: int = 20
) -> TimeSplit:
    """Split rows by `event_timestamp`: train < valid_start <= valid < test_start <= test.

    Raises InvalidInputError (field "rows") when a part would have fewer than `min_rows` rows: too little data to
    train and judge a model honestly.
    """
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise InvalidInputError(
            "valid_fraction and test_fraction must be in (0, 1) and sum below 1",
            field="split",
            value=(valid_fraction, test_fraction),
        )
    if len(frame) < 3 * min_rows:
        raise InvalidInputError(
            f"only {len(frame)} training examples; at least {3 * min_rows} are needed for a train/valid/test split",
            field="rows",
            value=len(frame),
        )
    times = pd.to_datetime(frame[TIMESTAMP], utc=True)
    method, valid_at, test_at = _cuts(times, valid_fraction, test_fraction)
    parts = {
        "train": frame[(times < valid_at).to_numpy()],
        "valid": frame[((times >= valid_at) & (times < test_at)).to_numpy()],
        "test": frame[(times >= test_at).to_numpy()],
    }
    for name, part in parts.items():
        if len(part) < min_rows:
            raise InvalidInputError(
                f"the time split leaves {len(part)} {name} examples (need >= {min_rows}); use a longer dataset",
                field="rows",
                value=len(part),
            )
    summary = SplitSummary(
        method=method,
        train_start=times.min().isoformat(),
        valid_start=valid_at.isoformat(),
        test_start=test_at.isoformat(),
        test_end=times.max().isoformat(),
        rows={name: len(part) for name, part in parts.items()},
    )
    return TimeSplit(
        parts["train"].reset_index(drop=True),
        parts["valid"].reset_index(drop=True),
        parts["test"].reset_index(drop=True),
        summary,
    )
