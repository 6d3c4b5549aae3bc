"""Incremental, idempotent, restartable materialisation (offline store -> online store).

Feast records a view's materialised interval in the registry only after the view's rows are written, and online
writes are upserts that keep the newest event timestamp per entity (Redis checks the stored `_ts`, SQLite replaces
by key). So a run that crashes half-way leaves the interval unrecorded; the next run writes the same interval again
and ends with exactly the state an uninterrupted run would have produced.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)

# First run of a view: how far back to look when the registry has no interval yet (snapshots are daily; a view's
# TTL bounds what online serving may use anyway, so older rows would never be read).
DEFAULT_LOOKBACK = timedelta(days=3650)


def materialize_incremental(store: FeatureStore, end: datetime, views: list[str] | None = None) -> dict[str, Any]:
    """Materialise every batch view (or `views`) from its last recorded end to `end`; returns per-view stats."""
    end = end.astimezone(UTC)
    selected = [v for v in store.list_batch_feature_views() if v.online and (views is None or v.name in views)]
    if views is not None:
        unknown = sorted(set(views) - {v.name for v in selected})
        if unknown:
            from journey.errors import InvalidInputError

            raise InvalidInputError(f"unknown feature view(s) {unknown}", field="views", value=unknown)
    stats: dict[str, Any] = {}
    for view in selected:
        start = _last_end(view) or end - DEFAULT_LOOKBACK
        if start >= end:
            stats[view.name] = {"skipped": "up to date", "start": start.isoformat(), "end": end.isoformat()}
            continue
        began = time.perf_counter()
        store.materialize(start_date=start, end_date=end, feature_views=[view.name])
        seconds = time.perf_counter() - began
        stats[view.name] = {"start": start.isoformat(), "end": end.isoformat(), "seconds": round(seconds, 3)}
        log.info("materialised view", extra={"view": view.name, **stats[view.name]})
    return stats


def _last_end(view: Any) -> datetime | None:
    intervals = getattr(view, "materialization_intervals", None) or []
    if not intervals:
        return None
    return max(end for _, end in intervals).astimezone(UTC)
