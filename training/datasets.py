"""From a stored event dataset to a labelled, point-in-time-correct training set (and the session history it reads).

    write_session_history(dataset, settings)        replay the sessions into the `session_activity` offline table
    build_training_set(dataset, service, settings)  -> (frame, metadata): examples and labels (`labels.py`), then
                                                       their features as of each decision time (`retrieval.py`)

The examples of each feature service come from `labels.ENTITY_BUILDERS`; why no feature can see its label is told
in `labels.py`, how Feast's join is made to keep every row in `retrieval.py`.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from journey.contracts import NEXT_ITEM_V1, PURCHASE_PROPENSITY_V1, SESSION, SESSION_ACTIVITY
from journey.datasets.store import DatasetStore
from journey.errors import InvalidInputError
from journey.session_features import session_rows
from journey.settings import Settings
from journey.stores.feature_store import feature_service, open_store
from journey.stores.offline import OfflineTables
from training.labels import (
    DEFAULT_MAX_EXAMPLES,
    DEFAULT_MAX_PER_SESSION,
    ENTITY_BUILDERS,
    LABEL,
    TIMESTAMP,
    Horizon,
)
from training.retrieval import DEFAULT_BATCH_ROWS, RetrievalStats, retrieve

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)


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
    frame, stats = retrieve(store, service, entities, DEFAULT_BATCH_ROWS)
    meta = _metadata(dataset, service, events.num_rows, frame, stats, options, entities_s)
    log.info("training set built", extra={k: v for k, v in meta.items() if k in ("dataset", "service", "rows")})
    return frame, meta


def _metadata(
    dataset: str,
    service: str,
    events: int,
    frame: pd.DataFrame,
    stats: RetrievalStats,
    options: dict[str, Any],
    entities_s: float,
) -> dict[str, Any]:
    """What the report and the registry say about a training set: size, labels, window, gaps, sampling, timings."""
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
        "events": events,
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
    return meta
