"""Point-in-time retrieval: the features of a feature service for every entity row, read through Feast's
`get_historical_features` (the same joins the online store answers with, as of each row's decision time).

    training_set(store, service, entities)   -> entity columns + the service's features, in the input order
    service_features(store, service)         -> those feature columns, in the service's order

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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa

from journey.errors import InvalidInputError
from journey.stores.feature_store import feature_service
from training.labels import ROW_ID, TIMESTAMP

if TYPE_CHECKING:
    from feast import FeatureStore, OnDemandFeatureView

log = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS: Final = 100_000  # entity rows per Feast query: bounds the Dask merge's memory
_QUERY_ID = "__query_id"


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
    # dask comes with Feast's file offline store: imported when a query runs, not when training starts
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


def retrieve(
    store: FeatureStore, service: str, entities: pd.DataFrame, batch_rows: int = DEFAULT_BATCH_ROWS
) -> tuple[pd.DataFrame, RetrievalStats]:
    """`training_set`'s frame and how complete it is (rows missing each view's features, seconds)."""
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
    frame, _ = retrieve(store, service, entities, batch_rows)
    return frame
