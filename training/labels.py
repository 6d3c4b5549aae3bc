"""Labelled examples of each model: the entity rows a training set is built from, with labels that never leak.

One row is one decision a model is asked to make online, at the decision time t (`event_timestamp`):

    purchase_propensity_v1  every `view` of item i in session s at time t (user u). label 1 when u purchases i
                            strictly after t: in the same session (horizon "session", default) or within a fixed
                            time (a timedelta horizon, any session). `candidate_price` is the view's price, else the
                            item's last price seen at or before t; `request_ts` is t in unix seconds.
    next_action_v1          the session right after its k-th event, at that event's time t. label = type of event
                            k+1 (view / add_to_cart / remove_from_cart / purchase), or `exit` when k is the last.
    next_item_v1            the same instants, for the k that have an event k+1: label = the item of event k+1.

Why no feature can see its label (a test recomputes the features from raw events to check it):

- user_activity / item_popularity are daily snapshots stamped D 00:00 UTC and computed from events strictly
  before D (training/features.py). Feast joins the newest snapshot with timestamp <= t, i.e. the latest midnight
  <= t: the current day's events, the event at t and everything after it are never in them.
- session_activity holds the session's state after each of its events (`write_session_history`), stamped with that
  event's time; the join at t therefore gives the state after every session event with timestamp <= t. That
  includes the event at t itself, which is what the online path serves too (`/events` pushes the state before the
  model is asked about the next step).
- labels use only events with a timestamp strictly after t. next_action and next_item drop the examples whose next
  event has the same timestamp as event k: the state "at t" would already contain the label event. Examples whose
  label window reaches past the end of the data are dropped too (censored: the session may go on, the purchase may
  come later), so a missing event is never read as a negative label.

Sampling keeps training fast: at most `max_per_session` examples per session (uniform within the session, which
also caps bots' long sessions) and `max_examples` overall, drawn with a seed; `row_id` numbers the examples in time
order. `label_indices` and `label_ids` read a training frame's label column as the session models do, naming a
label they cannot read.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final, Literal, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from journey.contracts import ITEM, NEXT_ACTION_V1, NEXT_ITEM_V1, PURCHASE_PROPENSITY_V1, SESSION, USER
from journey.errors import InvalidInputError
from journey.events import EVENT_TYPES

ROW_ID: Final = "row_id"
TIMESTAMP: Final = "event_timestamp"  # the entity row's time: the decision time t
LABEL: Final = "label"
LABEL_TIMESTAMP: Final = "label_timestamp"  # time of the event that made the label (NaT for 0 / exit)
EXIT: Final = "exit"
NEXT_ACTION_LABELS: Final = (*EVENT_TYPES, EXIT)

Horizon: TypeAlias = Literal["session"] | timedelta

DEFAULT_MAX_PER_SESSION: Final = 20
DEFAULT_MAX_EXAMPLES: Final = 200_000
_EVENT_COLUMNS = ("event_id", USER, SESSION, ITEM, "event_type", "event_timestamp", "price")


def _sort(frame: pd.DataFrame, columns: list[str], *, ignore_index: bool = False) -> pd.DataFrame:
    """`frame.sort_values(columns, kind="stable")`, ordered by Arrow: the same stable order, nulls last.

    pandas' stable multi-column sort compares Python strings: ~5 s per call on 2M session and event ids, and the
    entity builders sort three times; Arrow's `sort_indices` does the same sort in under a second.
    """
    if not len(frame):
        return frame.reset_index(drop=True) if ignore_index else frame
    keys = pa.table({name: pa.Array.from_pandas(frame[name]) for name in columns})
    order = pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in columns]).to_numpy()
    out: pd.DataFrame = frame.iloc[order]
    return out.reset_index(drop=True) if ignore_index else out


def _events_frame(events: pa.Table) -> pd.DataFrame:
    """The columns labelling needs, sorted by (session, time, event_id): the session's event order."""
    missing = [c for c in _EVENT_COLUMNS if c not in events.column_names]
    if missing:
        raise InvalidInputError(f"events lack column {missing[0]!r}", field=missing[0])
    df: pd.DataFrame = events.select(list(_EVENT_COLUMNS)).to_pandas()
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    return _sort(df, [SESSION, "event_timestamp", "event_id"], ignore_index=True)


def _end_of_data(df: pd.DataFrame, data_end: datetime | None) -> pd.Timestamp:
    if data_end is None:
        return pd.Timestamp(df["event_timestamp"].max())
    stamp = pd.Timestamp(data_end)
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")


def _open_sessions(df: pd.DataFrame, end: pd.Timestamp, session_timeout: timedelta) -> pd.Series:
    """Per row: whether its session may continue after the data ends (last event within a timeout of the end)."""
    last = df.groupby(SESSION, sort=False)["event_timestamp"].transform("max")
    return last + session_timeout > end


def _sample(frame: pd.DataFrame, max_per_session: int | None, max_examples: int | None, seed: int) -> pd.DataFrame:
    """Uniform within each session up to `max_per_session`, then uniform overall up to `max_examples`."""
    rng = np.random.default_rng(seed)
    if max_per_session is not None:
        if max_per_session < 1:
            raise InvalidInputError("max_per_session must be >= 1", field="max_per_session", value=max_per_session)
        draw = pd.Series(rng.random(len(frame)), index=frame.index)
        rank = draw.groupby(frame[SESSION], sort=False).rank(method="first")
        frame = frame[rank <= max_per_session]
    if max_examples is not None:
        if max_examples < 1:
            raise InvalidInputError("max_examples must be >= 1", field="max_examples", value=max_examples)
        if len(frame) > max_examples:
            frame = frame.iloc[np.sort(rng.choice(len(frame), size=max_examples, replace=False))]
    return frame


def _finish(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Time order (ties by session, event), `row_id` = position, the given columns in that order."""
    out = _sort(frame, ["event_timestamp", SESSION, "event_id"], ignore_index=True)
    out.insert(0, ROW_ID, np.arange(len(out), dtype=np.int64))
    return out[[ROW_ID, *columns]]


def propensity_entities(
    events: pa.Table,
    *,
    horizon: Horizon = "session",
    session_timeout: timedelta = timedelta(minutes=30),
    max_per_session: int | None = DEFAULT_MAX_PER_SESSION,
    max_examples: int | None = DEFAULT_MAX_EXAMPLES,
    seed: int = 0,
    data_end: datetime | None = None,
) -> pd.DataFrame:
    """One example per `view` event: (user, item, session) at the view's time, labelled by a later purchase.

    `horizon`: "session" (a purchase of the item later in the same session) or a timedelta (a purchase by the same
    user within that time after the view, any session). Examples whose horizon is not fully observed are dropped:
    views in sessions that may continue past `data_end` (last event within `session_timeout` of it), or, for a
    timedelta, views later than `data_end - horizon`. `data_end` defaults to the last event's time.

    Columns: row_id, event_id, event_timestamp, user_id, item_id, session_id, candidate_price, request_ts,
    candidate_item_id (= item_id, the on-demand views' request input), label (int64 0/1), label_timestamp (the
    first such purchase, NaT when label is 0).
    """
    _check_horizon(horizon)
    df = _events_frame(events)
    end = _end_of_data(df, data_end)
    by_time = _sort(df, ["event_timestamp", "event_id"])
    df["known_price"] = by_time.groupby(ITEM, sort=False)["price"].ffill()  # aligned on the index
    views = df[df["event_type"] == "view"]
    if horizon == "session":
        keep = ~_open_sessions(df, end, session_timeout)[views.index]
        by = [SESSION, ITEM]
    else:
        keep = views["event_timestamp"] + horizon <= end
        by = [USER, ITEM]
    labelled = _label_purchases(views[keep], df, by, horizon)
    labelled = _sort(labelled, [SESSION, "event_timestamp", "event_id"], ignore_index=True)
    sampled = _sample(labelled, max_per_session, max_examples, seed)
    return _finish(
        sampled,
        [
            *("event_id", TIMESTAMP, USER, ITEM, SESSION),
            *("candidate_price", "request_ts", "candidate_item_id", LABEL, LABEL_TIMESTAMP),
        ],
    )


def _check_horizon(horizon: Horizon) -> None:
    if not (horizon == "session" or isinstance(horizon, timedelta)):
        raise InvalidInputError(f"horizon must be 'session' or a timedelta, got {horizon!r}", field="horizon")
    if isinstance(horizon, timedelta) and horizon <= timedelta(0):
        raise InvalidInputError("horizon must be positive", field="horizon", value=str(horizon))


def _label_purchases(views: pd.DataFrame, df: pd.DataFrame, by: list[str], horizon: Horizon) -> pd.DataFrame:
    """Each view with the first purchase by the same `by` keys strictly after it (within `horizon`), its 0/1 label
    and the request columns the on-demand views read (candidate price and item, request time)."""
    purchases = df.loc[df["event_type"] == "purchase", [*by, "event_timestamp"]].rename(
        columns={"event_timestamp": LABEL_TIMESTAMP}
    )
    labelled = pd.merge_asof(
        views.sort_values("event_timestamp", kind="stable"),
        purchases.sort_values(LABEL_TIMESTAMP, kind="stable"),
        left_on="event_timestamp",
        right_on=LABEL_TIMESTAMP,
        by=by,
        direction="forward",
        allow_exact_matches=False,  # strictly after t
    )
    if isinstance(horizon, timedelta):
        too_late = labelled[LABEL_TIMESTAMP] - labelled["event_timestamp"] > horizon
        labelled.loc[too_late, LABEL_TIMESTAMP] = pd.NaT
    labelled[LABEL] = labelled[LABEL_TIMESTAMP].notna().astype(np.int64)
    labelled["candidate_price"] = labelled["price"].fillna(labelled["known_price"]).astype(np.float64)
    labelled["request_ts"] = labelled["event_timestamp"].astype("datetime64[s, UTC]").astype(np.int64)
    labelled["candidate_item_id"] = labelled[ITEM].astype(np.int64)
    return labelled


def _next_in_session(df: pd.DataFrame) -> tuple[np.ndarray, pd.Series, np.ndarray]:
    """Per event of a session-ordered frame: whether the session has a next event, that event's time (NaT when
    not) and whether it shares this event's timestamp (then the state at t already holds it: no example)."""
    same = (df[SESSION].shift(-1) == df[SESSION]).to_numpy()
    next_time = df["event_timestamp"].shift(-1).where(same)
    return same, next_time, same & (next_time == df["event_timestamp"]).to_numpy()


def next_action_entities(
    events: pa.Table,
    *,
    session_timeout: timedelta = timedelta(minutes=30),
    max_per_session: int | None = DEFAULT_MAX_PER_SESSION,
    max_examples: int | None = DEFAULT_MAX_EXAMPLES,
    seed: int = 0,
    data_end: datetime | None = None,
) -> pd.DataFrame:
    """One example per event k of a session, at its time t: label = type of event k+1, or `exit` after the last.

    Dropped: examples whose next event has the same timestamp (the session state at t would include it), and the
    `exit` examples of sessions that may continue past `data_end` (last event within `session_timeout` of it).

    Columns: row_id, event_id, event_timestamp, user_id, session_id, label (one of NEXT_ACTION_LABELS),
    label_timestamp (the next event's time, NaT for exit).
    """
    df = _events_frame(events)
    end = _end_of_data(df, data_end)
    same, df[LABEL_TIMESTAMP], tie = _next_in_session(df)
    df[LABEL] = df["event_type"].shift(-1).where(same).fillna(EXIT).astype(str)
    censored = ~same & _open_sessions(df, end, session_timeout).to_numpy()
    sampled = _sample(df[~tie & ~censored], max_per_session, max_examples, seed)
    return _finish(sampled, ["event_id", TIMESTAMP, USER, SESSION, LABEL, LABEL_TIMESTAMP])


def next_item_entities(
    events: pa.Table,
    *,
    session_timeout: timedelta = timedelta(minutes=30),
    max_per_session: int | None = DEFAULT_MAX_PER_SESSION,
    max_examples: int | None = DEFAULT_MAX_EXAMPLES,
    seed: int = 0,
    data_end: datetime | None = None,
) -> pd.DataFrame:
    """One example per event k of a session that has an event k+1: label = the item of event k+1.

    Dropped, as for next action: examples whose next event has the same timestamp (the state at t would include
    it). The session's last event has no next item and makes no example (`timeout` and `data_end` therefore do not
    matter here; they are accepted so every builder takes the same options).

    Columns: row_id, event_id, event_timestamp, user_id, session_id, label (the next item_id, int64),
    label_timestamp.
    """
    del session_timeout, data_end
    df = _events_frame(events)
    same, df[LABEL_TIMESTAMP], tie = _next_in_session(df)
    df[LABEL] = df[ITEM].shift(-1)
    labelled = df[same & ~tie].copy()
    labelled[LABEL] = labelled[LABEL].astype(np.int64)
    sampled = _sample(labelled, max_per_session, max_examples, seed)
    return _finish(sampled, ["event_id", TIMESTAMP, USER, SESSION, LABEL, LABEL_TIMESTAMP])


EntityBuilder: TypeAlias = Callable[..., pd.DataFrame]
ENTITY_BUILDERS: Final[dict[str, EntityBuilder]] = {
    PURCHASE_PROPENSITY_V1: propensity_entities,
    NEXT_ACTION_V1: next_action_entities,
    NEXT_ITEM_V1: next_item_entities,
}


# ---------------------------------------------------------------------------------------------------------------
# Labels as the models read them
# ---------------------------------------------------------------------------------------------------------------


def label_indices(frame: pd.DataFrame) -> np.ndarray:
    """`label` strings -> indices into NEXT_ACTION_LABELS; a missing column or an unknown label names it."""
    if LABEL not in frame.columns:
        raise InvalidInputError(f"the training frame has no {LABEL!r} column", field=LABEL)
    codes = np.asarray(pd.Categorical(frame[LABEL], categories=NEXT_ACTION_LABELS).codes, dtype=np.int64)
    if (codes < 0).any():
        bad = frame[LABEL].to_numpy()[np.flatnonzero(codes < 0)[0]]
        raise InvalidInputError(
            f"unknown next-action label {bad!r}; expected one of {list(NEXT_ACTION_LABELS)}", field=LABEL, value=bad
        )
    return codes


def label_ids(frame: pd.DataFrame) -> np.ndarray:
    """The `label` column as int64 item ids; a missing column or a label that is not an integer (missing, 2.5,
    "abc") names it. Integral floats (12.0, what a merge with gaps makes of int64) are accepted."""
    if LABEL not in frame.columns:
        raise InvalidInputError(f"the training frame has no {LABEL!r} column", field=LABEL)
    column = frame[LABEL]
    try:
        numbers = pd.to_numeric(column, errors="raise")
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"next-item labels must be item ids (integers): {exc}", field=LABEL) from exc
    if pd.api.types.is_integer_dtype(numbers.dtype) and not numbers.isna().any():
        return numbers.to_numpy(dtype=np.int64)
    values = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values) | (values != np.round(values))  # cast to int64, NaN would become -2**63 silently
    if bad.any():
        first = column[bad].iloc[0]
        raise InvalidInputError(
            f"next-item labels must be item ids (integers): {int(bad.sum())} are not, e.g. {first}",
            field=LABEL,
            value=str(first),
        )
    return values.astype(np.int64)
