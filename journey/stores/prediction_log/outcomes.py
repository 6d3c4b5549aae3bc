"""Outcomes joined to logged predictions: a purchase is the outcome of the same user's predictions made at most
`attribution_window_s` before it. `label_predictions` labels every prediction (for AUC), `attribute_purchases`
credits every purchase to one prediction (last touch).

pandas (its `merge_asof` does the as-of joins) is imported inside the functions that use it, so importing the
prediction log to append to it does not load pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import pyarrow as pa
import pyarrow.compute as pc

from journey.errors import InvalidInputError
from journey.stores.prediction_log.schema import PREDICTION_SCHEMA

if TYPE_CHECKING:
    import pandas as pd

PURCHASE: Final = "purchase"  # journey.events.EventType.PURCHASE
LABEL_FIELDS: Final = (
    pa.field("converted", pa.bool_(), nullable=False),
    pa.field("purchase_time", pa.timestamp("us", tz="UTC")),
)
ATTRIBUTION_SCHEMA: Final = pa.schema(
    [
        pa.field("event_id", pa.string()),
        pa.field("user_id", pa.int64()),
        pa.field("purchase_time", pa.timestamp("us", tz="UTC")),
        pa.field("request_id", pa.string()),
        pa.field("prediction_time", pa.timestamp("us", tz="UTC")),
        pa.field("endpoint", pa.string()),
        pa.field("experiment", pa.string()),
        pa.field("variant", pa.string()),
        pa.field("model_version", pa.int64()),
    ]
)


def label_predictions(predictions: pa.Table, events: pa.Table, window_s: float) -> pa.Table:
    """Each prediction (same order) plus `converted`: its user bought within `window_s` at or after it, and
    `purchase_time`: the first such purchase (null when none). Shadow rows are labelled too: that is how a shadow
    version's ranking is judged. `events` are canonical events (journey.events); only purchases count."""
    import pandas as pd  # lazy: see the module docstring

    _check_window(window_s)
    frame = _prediction_frame(predictions)
    frame["_row"] = range(len(frame))
    purchases = _purchase_frame(events)
    if frame.empty or purchases.empty:
        frame["purchase_time"] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us, UTC]")
    else:
        frame = pd.merge_asof(
            frame.sort_values("time", kind="stable"),
            purchases[["user_id", "purchase_time"]].sort_values("purchase_time", kind="stable"),
            left_on="time",
            right_on="purchase_time",
            by="user_id",
            direction="forward",
            tolerance=pd.Timedelta(seconds=window_s),
        ).sort_values("_row", kind="stable")
    converted = pa.array(frame["purchase_time"].notna().to_numpy(), pa.bool_())
    purchase_time = pa.array(frame["purchase_time"], pa.timestamp("us", tz="UTC"))
    return predictions.append_column(LABEL_FIELDS[0], converted).append_column(LABEL_FIELDS[1], purchase_time)


def attribute_purchases(predictions: pa.Table, events: pa.Table, window_s: float) -> pa.Table:
    """Each purchase with the newest non-shadow prediction of its user at most `window_s` before it (last touch);
    purchases with none are left out. ATTRIBUTION_SCHEMA, in purchase time order."""
    import pandas as pd  # lazy: see the module docstring

    _check_window(window_s)
    frame = _prediction_frame(predictions)
    frame = frame[~frame["shadow"]].rename(columns={"time": "prediction_time"})
    purchases = _purchase_frame(events)
    if frame.empty or purchases.empty:
        return ATTRIBUTION_SCHEMA.empty_table()
    joined = pd.merge_asof(
        purchases.sort_values("purchase_time", kind="stable"),
        frame[
            ["user_id", "prediction_time", "request_id", "endpoint", "experiment", "variant", "model_version"]
        ].sort_values("prediction_time", kind="stable"),
        left_on="purchase_time",
        right_on="prediction_time",
        by="user_id",
        direction="backward",
        tolerance=pd.Timedelta(seconds=window_s),
    )
    joined = joined[joined["request_id"].notna()]
    joined["model_version"] = joined["model_version"].astype("int64")
    return pa.Table.from_pandas(joined[ATTRIBUTION_SCHEMA.names], schema=ATTRIBUTION_SCHEMA, preserve_index=False)


def _check_window(window_s: float) -> None:
    if not window_s > 0:
        raise InvalidInputError(
            f"the attribution window must be > 0 seconds, got {window_s!r}",
            field="attribution_window_s",
            value=window_s,
        )


def _prediction_frame(predictions: pa.Table) -> pd.DataFrame:
    missing = set(PREDICTION_SCHEMA.names) - set(predictions.column_names)
    if missing:
        raise InvalidInputError(
            f"predictions lack columns {sorted(missing)}", field="predictions", value=sorted(missing)
        )
    frame: pd.DataFrame = predictions.select(list(PREDICTION_SCHEMA.names)).cast(PREDICTION_SCHEMA).to_pandas()
    frame["time"] = frame["time"].astype("datetime64[us, UTC]")
    return frame


def _purchase_frame(events: pa.Table) -> pd.DataFrame:
    for column in ("event_id", "user_id", "event_type", "event_timestamp"):
        if column not in events.column_names:
            raise InvalidInputError(f"events lack column {column!r}", field="events", value=column)
    purchases = events.filter(pc.equal(events["event_type"], PURCHASE))
    frame: pd.DataFrame = purchases.select(["event_id", "user_id", "event_timestamp"]).to_pandas()
    frame = frame.rename(columns={"event_timestamp": "purchase_time"})
    frame["purchase_time"] = frame["purchase_time"].astype("datetime64[us, UTC]")
    frame["user_id"] = frame["user_id"].astype("int64")
    return frame
