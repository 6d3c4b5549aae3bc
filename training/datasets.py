"""Labelled, point-in-time-correct training sets, read through Feast's `get_historical_features`.

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
order.

What Feast 0.67's point-in-time join does that shapes `training_set` (file offline store, local profile):

- rows come back in another order, and an entity row is *dropped* when its key has rows in a view but none in
  [t - ttl, t] (a user's first day: snapshots only start at the next midnight), while a key with no rows at all is
  kept with NaN. PostgreSQL (prod) keeps both with NULLs. One query with the whole service would lose every
  feature of such a row, so each feature view is queried on its own and re-joined on `row_id`: a view without a
  row in its TTL leaves only its own features missing, as the online store answers for an unknown key, in both
  profiles. On-demand views are then computed on the joined frame with Feast's own `transform_arrow` (what
  Feast's retrieval job does after the join), so their output is also defined where a source view is missing.
- Feast de-duplicates the joined rows on (join keys, event_timestamp): two entity rows with equal keys and time
  would collapse into one. Each view is therefore queried with unique (keys, time) pairs and fanned back out.
- an int feature comes back float64 (NaN) when any row misses it; the frame keeps it float64 rather than inventing
  a fill value. Models treat NaN as missing (XGBoost natively; the next-action model must impute).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from journey.contracts import (
    ITEM,
    NEXT_ACTION_V1,
    NEXT_ITEM_V1,
    PURCHASE_PROPENSITY_V1,
    SESSION,
    SESSION_ACTIVITY,
    USER,
)
from journey.datasets.store import DatasetStore
from journey.errors import InvalidInputError
from journey.events import EVENT_TYPES
from journey.session_features import session_rows
from journey.settings import Settings
from journey.stores.offline import OfflineTables

if TYPE_CHECKING:
    from feast import FeatureStore, OnDemandFeatureView

log = logging.getLogger(__name__)

ROW_ID: Final = "row_id"
TIMESTAMP: Final = "event_timestamp"  # the entity row's time: the decision time t
LABEL: Final = "label"
LABEL_TIMESTAMP: Final = "label_timestamp"  # time of the event that made the label (NaT for 0 / exit)
EXIT: Final = "exit"
NEXT_ACTION_LABELS: Final = (*EVENT_TYPES, EXIT)

Horizon: TypeAlias = Literal["session"] | timedelta

DEFAULT_MAX_PER_SESSION: Final = 20
DEFAULT_MAX_EXAMPLES: Final = 200_000
DEFAULT_BATCH_ROWS: Final = 100_000  # entity rows per Feast query: bounds the Dask merge's memory
_QUERY_ID = "__query_id"
_EVENT_COLUMNS = ("event_id", USER, SESSION, ITEM, "event_type", "event_timestamp", "price")


# ---------------------------------------------------------------------------------------------------------------
# Entities and labels
# ---------------------------------------------------------------------------------------------------------------


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
    if not (horizon == "session" or isinstance(horizon, timedelta)):
        raise InvalidInputError(f"horizon must be 'session' or a timedelta, got {horizon!r}", field="horizon")
    if isinstance(horizon, timedelta) and horizon <= timedelta(0):
        raise InvalidInputError("horizon must be positive", field="horizon", value=str(horizon))
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
    views = views[keep]
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
    labelled = _sort(labelled, [SESSION, "event_timestamp", "event_id"], ignore_index=True)
    sampled = _sample(labelled, max_per_session, max_examples, seed)
    return _finish(
        sampled,
        [
            *("event_id", TIMESTAMP, USER, ITEM, SESSION),
            *("candidate_price", "request_ts", "candidate_item_id", LABEL, LABEL_TIMESTAMP),
        ],
    )


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


# ---------------------------------------------------------------------------------------------------------------
# Point-in-time retrieval
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ViewQuery:
    name: str
    join_keys: tuple[str, ...]
    features: tuple[str, ...]  # the service's features of this view plus the inputs on-demand views read from it


@dataclass(frozen=True)
class _Plan:
    service: str
    features: tuple[str, ...]  # output columns, in the service's order
    views: tuple[_ViewQuery, ...]
    on_demand: tuple[tuple[OnDemandFeatureView, tuple[str, ...]], ...]
    request_inputs: tuple[str, ...]

    @property
    def required_columns(self) -> list[str]:
        keys = dict.fromkeys(k for v in self.views for k in v.join_keys)
        return [ROW_ID, TIMESTAMP, *keys, *self.request_inputs]


def _plan(store: FeatureStore, service: str) -> _Plan:
    """What to read for a service: its batch views (join keys, features), on-demand views and request inputs."""
    from journey.stores.feature_store import feature_service

    resolved = feature_service(store, service)  # InvalidInputError naming the known services
    on_demand_names = {v.name for v in store.list_on_demand_feature_views()}
    features: list[str] = []
    fetch: dict[str, list[str]] = {}
    on_demand: list[tuple[OnDemandFeatureView, tuple[str, ...]]] = []
    request: list[str] = []
    for projection in resolved.feature_view_projections:
        if projection.name_alias or projection.join_key_map:
            raise NotImplementedError(f"{service}: aliased projection {projection.name!r} is not supported")
        names = [f.name for f in projection.features]
        features += names
        if projection.name in on_demand_names:
            odfv = store.get_on_demand_feature_view(projection.name)
            on_demand.append((odfv, tuple(names)))
            for source in odfv.source_feature_view_projections.values():
                fetch.setdefault(source.name, []).extend(f.name for f in source.features)
            for request_source in odfv.source_request_sources.values():
                request += [f.name for f in request_source.schema if f.name not in request]
        else:
            fetch.setdefault(projection.name, []).extend(names)
    duplicated = sorted({f for f in features if features.count(f) > 1})
    if duplicated:
        raise InvalidInputError(f"{service}: feature names {duplicated} occur in more than one view", field=service)
    views = tuple(
        _ViewQuery(name, tuple(c.name for c in store.get_feature_view(name).entity_columns), tuple(dict.fromkeys(f)))
        for name, f in fetch.items()
    )
    return _Plan(service, tuple(features), views, tuple(on_demand), tuple(request))


def service_features(store: FeatureStore, service: str) -> list[str]:
    """The feature columns `training_set` returns for a service, in the service's order (views, then features)."""
    return list(_plan(store, service).features)


def _check_entities(plan: _Plan, entities: pd.DataFrame) -> None:
    missing = [c for c in plan.required_columns if c not in entities.columns]
    if missing:
        raise InvalidInputError(
            f"entity frame for {plan.service!r} lacks column {missing[0]!r} (needs {plan.required_columns})",
            field=missing[0],
        )
    if entities[ROW_ID].duplicated().any():
        raise InvalidInputError("entity frame has duplicate row_id values", field=ROW_ID)
    keys = [c for c in plan.required_columns if c not in (ROW_ID, *plan.request_inputs)]
    nulls = [c for c in keys if entities[c].isna().any()]
    if nulls:
        raise InvalidInputError(f"entity frame has missing values in {nulls[0]!r}", field=nulls[0])


def _timestamps(column: pd.Series) -> pd.Series:
    """Entity times as tz-aware UTC (naive values are taken as UTC)."""
    return pd.to_datetime(column, utc=True)


_CONTENT_TOKEN_MAX_SIZE: Final = 4096  # arrays below it keep Dask's content hash (cheap, and equal content shares)


@contextlib.contextmanager
def _identity_tokens_for_arrays() -> Iterator[None]:
    """Make Dask name large arrays (strings, lists, numbers) by the array object, not by hashing their content.

    Feast's file offline store runs its join in Dask and calls `persist()` after every step; each later step
    re-tokenizes the persisted pandas partitions, and Dask tokenizes an object column by pickling it, three times,
    verifying each round trip: the list columns of `session_activity` (last items and event types) made one query of
    20k entity rows over 330k session rows take 280-390 s. Hashing the content through Arrow instead still cost
    ~40 s of a 200k-row training set on 2M events (SHA-1 over every persisted partition, again after each step).

    A token only has to name the data: one token per array *object*, drawn once and memoised for as long as that
    object lives, gives the same name every time Dask asks about the same array, and a different one for any other
    array. Two equal copies get two names, which only costs Dask a cache hit it never has here (every query builds
    its graph once). The same holds for numeric columns, whose SHA-1 was the next ~15 s; small arrays (index
    metadata, dtypes) keep Dask's own content hashing.
    """
    from dask.tokenize import normalize_token as untyped

    normalize_token: Any = untyped  # dask's Dispatch is untyped
    original = normalize_token.dispatch(np.ndarray)
    memo: dict[int, tuple[weakref.ref[np.ndarray], str]] = {}

    def normalize(x: np.ndarray) -> object:
        if x.size < _CONTENT_TOKEN_MAX_SIZE:
            return original(x)
        hit = memo.get(id(x))
        if hit is not None and hit[0]() is x:
            return ("journey-array", hit[1])
        try:
            ref = weakref.ref(x)
        except TypeError:  # an array without weak reference support: Dask's own way
            return original(x)
        memo[id(x)] = (ref, uuid.uuid4().hex)
        return ("journey-array", memo[id(x)][1])

    normalize_token.register(np.ndarray, normalize)
    try:
        yield
    finally:
        normalize_token.register(np.ndarray, original)


def _read_view(store: FeatureStore, view: _ViewQuery, entities: pd.DataFrame, batch_rows: int) -> pd.DataFrame:
    """The view's features for every entity row (aligned with `entities`), NaN where Feast returned none."""
    keys = [*view.join_keys, TIMESTAMP]
    frame = entities[list(view.join_keys)].assign(**{TIMESTAMP: _timestamps(entities[TIMESTAMP])})
    query_id = frame.groupby(keys, sort=False).ngroup().to_numpy()
    first = ~pd.Series(query_id).duplicated().to_numpy()
    queries = frame.loc[first, keys].assign(**{_QUERY_ID: query_id[first]}).sort_values(TIMESTAMP, kind="stable")
    refs = [f"{view.name}:{f}" for f in view.features]
    parts = []
    for start in range(0, len(queries), batch_rows):
        chunk = queries.iloc[start : start + batch_rows].reset_index(drop=True)
        with _identity_tokens_for_arrays():
            got = store.get_historical_features(entity_df=chunk, features=refs).to_df()
        parts.append(got[[_QUERY_ID, *view.features]])
    got = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[_QUERY_ID, *view.features])
    if got[_QUERY_ID].duplicated().any():  # would mean Feast matched one query twice: never silently pick one
        raise RuntimeError(f"Feast returned duplicate rows for view {view.name!r}")
    return got.set_index(_QUERY_ID).reindex(query_id).reset_index(drop=True)


def _apply_on_demand(odfv: OnDemandFeatureView, names: tuple[str, ...], frame: pd.DataFrame) -> pd.DataFrame:
    """The on-demand view's outputs, computed as Feast's retrieval job does after its join."""
    inputs = [f.name for p in odfv.source_feature_view_projections.values() for f in p.features]
    inputs += [f.name for s in odfv.source_request_sources.values() for f in s.schema]
    table = pa.Table.from_pandas(frame[list(dict.fromkeys(inputs))], preserve_index=False)
    out = odfv.transform_arrow(table, False)
    return pd.DataFrame({name: out[name].to_pandas() for name in names})


@dataclass(frozen=True)
class RetrievalStats:
    """How complete the retrieval was: rows per view that got no feature row (no row within its TTL)."""

    rows: int
    missing_by_view: dict[str, int]
    rows_missing_any: int
    seconds: float


def _retrieve(
    store: FeatureStore, service: str, entities: pd.DataFrame, batch_rows: int
) -> tuple[pd.DataFrame, RetrievalStats]:
    started = time.perf_counter()
    plan = _plan(store, service)
    _check_entities(plan, entities)
    base = entities.reset_index(drop=True)
    fetched: dict[str, pd.Series] = {}
    missing_by_view: dict[str, int] = {}
    missing_any = np.zeros(len(base), dtype=bool)
    for view in plan.views:
        values = _read_view(store, view, base, batch_rows)
        absent = values.isna().all(axis=1).to_numpy() if len(view.features) else np.zeros(len(base), bool)
        missing_by_view[view.name] = int(absent.sum())
        missing_any |= absent
        for name in view.features:
            fetched[name] = values[name]
    joined = pd.concat([base, pd.DataFrame({k: v for k, v in fetched.items() if k not in base.columns})], axis=1)
    for name in fetched.keys() & set(base.columns):
        # a view feature named like an entity column (session_activity.user_id): the entity value stays; a
        # different non-missing value would mean a session id shared by two users
        clash = fetched[name].notna() & (fetched[name] != base[name])
        if clash.any():
            log.warning("%s: feature %r differs from the entity column in %d rows", service, name, int(clash.sum()))
    for odfv, names in plan.on_demand:
        computed = _apply_on_demand(odfv, names, joined)
        for name in names:
            joined[name] = computed[name].to_numpy()
    extra = [c for c in joined.columns if c not in base.columns and c not in plan.features]
    result = joined.drop(columns=extra)
    result = result[[*base.columns, *[f for f in plan.features if f not in base.columns]]]
    stats = RetrievalStats(len(base), missing_by_view, int(missing_any.sum()), time.perf_counter() - started)
    for name, count in missing_by_view.items():
        if count:
            log.warning(
                "%s: %d of %d entity rows have no %s row within its TTL; its features are left missing",
                service,
                count,
                len(base),
                name,
                extra={"service": service, "view": name, "missing_rows": count, "rows": len(base)},
            )
    return result, stats


def training_set(
    store: FeatureStore, service: str, entities: pd.DataFrame, *, batch_rows: int = DEFAULT_BATCH_ROWS
) -> pd.DataFrame:
    """Point-in-time features of a feature service for every entity row, in the input order.

    `entities` needs `row_id` (unique), `event_timestamp` (the decision time; naive = UTC), the join keys of the
    service's views and the request inputs of its on-demand views; other columns (label, ...) are carried through.
    Returns the entity columns followed by the service's features in the service's order (`service_features`).
    A view without a row within its TTL leaves that view's features missing (NaN; a warning logs the count).

    Raises InvalidInputError for an unknown service or an entity frame missing a column (both named).
    """
    if batch_rows < 1:
        raise InvalidInputError("batch_rows must be >= 1", field="batch_rows", value=batch_rows)
    frame, _ = _retrieve(store, service, entities, batch_rows)
    return frame


# ---------------------------------------------------------------------------------------------------------------
# Dataset -> training set
# ---------------------------------------------------------------------------------------------------------------


def _latest_state_per_instant(rows: pa.Table) -> pa.Table:
    """Keep one session row per (session, timestamp): the state after all events at that instant.

    A point-in-time read at t sees every event with timestamp <= t; with events tied on time Feast would otherwise
    pick one of the tied rows arbitrarily.
    """
    if rows.num_rows == 0:
        return rows
    ordered = rows.sort_by([(SESSION, "ascending"), ("event_timestamp", "ascending"), ("session_events", "ascending")])
    sessions = ordered[SESSION].to_numpy()
    stamps = pc.cast(ordered["event_timestamp"], pa.int64()).to_numpy()
    last = np.ones(ordered.num_rows, dtype=bool)
    last[:-1] = (sessions[1:] != sessions[:-1]) | (stamps[1:] != stamps[:-1])
    return ordered.filter(pa.array(last))


def write_session_history(dataset: str, settings: Settings) -> str:
    """Replay the dataset's sessions into the `session_activity` offline table (replacing it); returns where.

    Training reads session features from this table through Feast, the online path pushes the same rows
    (journey.session_features), so both see identical session state.
    """
    events = DatasetStore(settings.events_dir).events(dataset)
    rows = _latest_state_per_instant(session_rows(events))
    return OfflineTables(settings).write(SESSION_ACTIVITY, rows, "replace")


EntityBuilder: TypeAlias = Callable[..., pd.DataFrame]
ENTITY_BUILDERS: Final[dict[str, EntityBuilder]] = {
    PURCHASE_PROPENSITY_V1: propensity_entities,
    NEXT_ACTION_V1: next_action_entities,
    NEXT_ITEM_V1: next_item_entities,
}


def _top_share(labels: pd.Series) -> float:
    """Share of the examples whose label is the most frequent item (how much a popularity guess gets right)."""
    return round(float(labels.value_counts(normalize=True).iloc[0]), 6) if len(labels) else 0.0


def build_training_set(
    dataset: str,
    service: str,
    settings: Settings,
    *,
    horizon: Horizon = "session",
    max_per_session: int | None = DEFAULT_MAX_PER_SESSION,
    max_examples: int | None = DEFAULT_MAX_EXAMPLES,
    seed: int | None = None,
    store: FeatureStore | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Entities of the service's model from a stored dataset, labelled, with point-in-time features.

    Needs `build_features`, `write_session_history` and `feast apply` for the dataset first. `horizon` applies to
    the propensity model only; `seed` defaults to the settings' seed. Returns the frame and its metadata: rows,
    label counts, time window, rows missing each view's features, timings.
    """
    from journey.stores.feature_store import feature_service, open_store

    started = time.perf_counter()
    store = store if store is not None else open_store(settings)
    feature_service(store, service)  # an unknown service fails before any work
    builder = ENTITY_BUILDERS.get(service)
    if builder is None:
        raise InvalidInputError(
            f"no training examples are defined for feature service {service!r}; known: {sorted(ENTITY_BUILDERS)}",
            field="service",
            value=service,
        )
    events = DatasetStore(settings.events_dir).events(dataset)
    options: dict[str, Any] = {
        "session_timeout": timedelta(seconds=settings.session_timeout_s),
        "max_per_session": max_per_session,
        "max_examples": max_examples,
        "seed": settings.seed if seed is None else seed,
    }
    if service == PURCHASE_PROPENSITY_V1:
        options["horizon"] = horizon
    entities = builder(events, **options)
    entities_s = time.perf_counter() - started
    frame, stats = _retrieve(store, service, entities, DEFAULT_BATCH_ROWS)
    if service == NEXT_ITEM_V1:  # one label per item: the counts would be the catalogue, not a summary
        label_summary: dict[str, Any] = {
            "distinct_items": int(frame[LABEL].nunique()),
            "top_item_share": _top_share(frame[LABEL]),
        }
    else:
        label_summary = {str(k): int(v) for k, v in frame[LABEL].value_counts().sort_index().items()}
    meta: dict[str, Any] = {
        "dataset": dataset,
        "service": service,
        "events": events.num_rows,
        "rows": len(frame),
        "labels": label_summary,
        "time_window": {
            "start": frame[TIMESTAMP].min().isoformat() if len(frame) else None,
            "end": frame[TIMESTAMP].max().isoformat() if len(frame) else None,
        },
        "rows_missing_view": stats.missing_by_view,
        "rows_missing_any_view": stats.rows_missing_any,
        "sampling": {k: str(v) if isinstance(v, timedelta) else v for k, v in options.items()},
        "seconds": {"entities": round(entities_s, 2), "features": round(stats.seconds, 2)},
    }
    if service == PURCHASE_PROPENSITY_V1:
        meta["positive_rate"] = float(frame[LABEL].mean()) if len(frame) else None
    log.info("training set built", extra={k: v for k, v in meta.items() if k in ("dataset", "service", "rows")})
    return frame, meta
