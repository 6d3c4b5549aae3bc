"""User profiles and segments: RFM + behaviour per user as of the end of the data, k-means segments with names.

    build_profiles(events, stages, seed)   -> Profiles (one row per user, a segment each)
    write_profiles(profiles, settings)     -> the `user_profile` offline table + the online store (Feast)

Why these choices:
- **Profile columns** (the `user_profile` view) are computed from the whole history up to the last event (not
  windowed like `user_activity`): a segment describes who a shopper is, not what they did this week.
- **Segments are clustered on what is not the label** (`behaviour.py`): behaviour before each session's first
  purchase (repeat views, carting, category focus, pacing) and, when the median user has 2+ sessions, session
  frequency. Purchases, spend, session conversion and cart abandonment are the outcome: the report *describes* them
  per segment, k-means never sees them. Clustering on them (as this module once did) read the label back: on a
  one-session-per-user log the "loyal buyers" were the sessions that bought (REES46: 64% of their sessions against
  0.02% for everybody else). With median sessions per user <= 1 the segments use in-session behaviour only, and the
  notes say so.
- **k** is the one in `K_RANGE` with the best silhouette, scored on a seeded sample of users (silhouette is O(n^2));
  the final k-means runs on up to `FIT_SAMPLE` users and labels everybody. Same data + seed, same segments.
- **Segment ids** are ordered by session conversion rate (0 = best), as the `user_profile` contract says: an order
  of the outcome, which describes the segments but does not shape them; ids are stable across reruns of equal data.
- **Names** come from each segment's mean behaviour against the whole population ("cart users" cart more often,
  "window shoppers" view many items per session, "bouncers" leave after a view, ...), never from its outcome;
  names that collide get the trait that tells them apart. They are labels for people, not model inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
import pyarrow as pa

from journey.contracts import USER, USER_PROFILE, USER_PROFILE_FEATURES, FeatureType
from journey.events import EVENT_TYPES
from journey.sessions import stable_argsort
from journey.settings import Settings
from journey.stages import PURCHASE_CODE, SessionEvents
from journey.stores.feature_store import apply, opened_store
from journey.stores.offline import OfflineTables
from journey.stores.online_write import write_online
from training.analysis.behaviour import (
    BEHAVIOUR,
    HISTORY,
    IN_SESSION,
    OUTCOMES,
    behaviour_features,
    design,
    segment_basis,
)
from training.analysis.segment_names import DESCRIBED, name_segments

log = logging.getLogger(__name__)

K_RANGE: Final = (2, 6)
SILHOUETTE_SAMPLE: Final = 3_000
FIT_SAMPLE: Final = 200_000
KMEANS_INIT: Final = 4
RFM_BUCKETS: Final = 5
_CART_CODE: Final = EVENT_TYPES.index("add_to_cart")
_US_PER_DAY: Final = 86_400_000_000
_TS = pa.timestamp("us", tz="UTC")
_ARROW: dict[FeatureType, pa.DataType] = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}


@dataclass(frozen=True)
class Segment:
    segment_id: int
    name: str
    users: int
    means: dict[str, float]  # mean of each BEHAVIOUR column over the segment's users (what defines it)
    outcomes: dict[str, float] = field(default_factory=dict)  # mean of each OUTCOMES column (what it did)

    def to_dict(self) -> dict[str, Any]:
        return {
            "segment_id": self.segment_id,
            "name": self.name,
            "users": self.users,
            "means": self.means,
            "outcomes": self.outcomes,
        }


@dataclass(frozen=True)
class Profiles:
    """One profile per user (arrays aligned with `user_id`, sorted) and the segments they fall in."""

    as_of: datetime
    user_id: np.ndarray
    features: dict[str, np.ndarray]  # every USER_PROFILE_FEATURES column except the segment's
    segment: np.ndarray  # segment id per user
    segments: tuple[Segment, ...]
    silhouette_by_k: dict[int, float]
    notes: tuple[str, ...] = ()
    behaviour: dict[str, np.ndarray] = field(default_factory=dict)  # every BEHAVIOUR column, aligned with user_id
    basis: str = HISTORY  # HISTORY or IN_SESSION (behaviour.segment_basis)
    clustered_on: tuple[str, ...] = ()  # the BEHAVIOUR columns k-means saw
    basis_reason: str = ""

    @property
    def k(self) -> int:
        return len(self.segments)

    @property
    def silhouette(self) -> float | None:
        return self.silhouette_by_k.get(self.k)

    def segment_of(self, users: np.ndarray) -> np.ndarray:
        """Segment id of each given user id (-1 for a user without a profile)."""
        if not self.user_id.size:
            return np.full(np.shape(users), -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.user_id, users), 0, self.user_id.size - 1)
        result: np.ndarray = np.where(self.user_id[pos] == users, self.segment[pos], -1)
        return result

    def table(self, created: datetime | None = None) -> pa.Table:
        """Rows of the `user_profile` feature view: user_id, event_timestamp (= as_of), created, features."""
        stamp = created or datetime.now(UTC)
        n = self.user_id.size
        names = np.array([s.name for s in self.segments], dtype=object)
        columns: dict[str, Any] = {**self.features, "segment_id": self.segment, "segment_name": names[self.segment]}
        fields = [pa.field(USER, pa.int64()), pa.field("event_timestamp", _TS), pa.field("created", _TS)]
        fields += [pa.field(name, _ARROW[kind]) for name, kind in USER_PROFILE_FEATURES.items()]
        arrays = [
            pa.array(self.user_id, pa.int64()),
            pa.array([self.as_of] * n, _TS),
            pa.array([stamp] * n, _TS),
            *(pa.array(columns[name], _ARROW[kind]) for name, kind in USER_PROFILE_FEATURES.items()),
        ]
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "users": int(self.user_id.size),
            "k": self.k,
            "silhouette": self.silhouette,
            "silhouette_by_k": {str(k): v for k, v in self.silhouette_by_k.items()},
            "basis": self.basis,
            "basis_reason": self.basis_reason,
            "clustered_on": list(self.clustered_on),
            "outcomes_not_clustered": list(OUTCOMES),
            "segments": [s.to_dict() for s in self.segments],
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------------------------------- features


def _ntiles(measure: np.ndarray, buckets: int = RFM_BUCKETS) -> np.ndarray:
    """NTILE(buckets) OVER (ORDER BY measure, user_id) for rows sorted by user_id (1 = lowest), as the batch RFM."""
    size = measure.size
    small, extra = divmod(size, buckets)
    position = np.arange(size)
    big_rows = extra * (small + 1)
    tile = np.where(position < big_rows, position // (small + 1), extra + (position - big_rows) // max(small, 1))
    out = np.empty(size, dtype=np.int64)
    out[np.argsort(measure, kind="stable")] = tile + 1
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
    return result


def user_features(events: SessionEvents, stages: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray], datetime]:
    """Per-user RFM and behaviour as of the last event: (sorted user ids, feature columns, as_of)."""
    users, user_of_session = np.unique(events.session_user, return_inverse=True)
    n_users, starts = users.size, events.starts
    per_event = np.repeat(user_of_session, events.lengths)
    is_purchase = events.event_type == PURCHASE_CODE
    spend = np.where(is_purchase & np.isfinite(events.price), events.price, 0.0)
    bought = np.maximum.reduceat(is_purchase, starts) if starts.size else is_purchase[:0]
    carted = np.maximum.reduceat(events.event_type == _CART_CODE, starts) if starts.size else bought
    sessions = np.bincount(user_of_session, minlength=n_users)
    buy_sessions = np.bincount(user_of_session, weights=bought, minlength=n_users)
    cart_sessions = np.bincount(user_of_session, weights=carted, minlength=n_users)
    abandoned = np.bincount(user_of_session, weights=carted & ~bought, minlength=n_users)
    as_of_us = int(events.ts_us.max()) if events.n_events else 0
    # each user's latest session (end time, then session code) gives the recency and the last stage
    ends = events.ts_us[events.last]
    latest = stable_argsort(ends)
    latest = latest[stable_argsort(user_of_session[latest])]
    final = latest[np.r_[user_of_session[latest][1:] != user_of_session[latest][:-1], True]]
    features = {
        "recency_days": (as_of_us - ends[final]) / _US_PER_DAY,
        "frequency_sessions": sessions.astype(np.int64),
        "monetary_value": np.bincount(per_event, weights=spend, minlength=n_users),
        "purchases_total": np.bincount(per_event, weights=is_purchase, minlength=n_users).astype(np.int64),
        "events_per_session": np.bincount(per_event, minlength=n_users) / np.maximum(sessions, 1),
        "session_conversion_rate": buy_sessions / np.maximum(sessions, 1),
        "session_cart_rate": cart_sessions / np.maximum(sessions, 1),
        "cart_abandonment_rate": _ratio(abandoned, cart_sessions),
        "last_stage": stages[events.last[final]].astype(np.int64),
    }
    features["r_score"] = _ntiles(-features["recency_days"])
    features["f_score"] = _ntiles(features["frequency_sessions"].astype(np.float64))
    features["m_score"] = _ntiles(features["monetary_value"])
    return users.astype(np.int64), features, datetime.fromtimestamp(as_of_us / 1e6, UTC)


# ------------------------------------------------------------------------------------------------------- segments


def _choose_k(x: np.ndarray, seed: int, k_range: tuple[int, int]) -> dict[int, float]:
    # scikit-learn (and threadpoolctl below) load on use: a heavy import the chain estimation does not need
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    sample = x[rng.choice(x.shape[0], size=min(SILHOUETTE_SAMPLE, x.shape[0]), replace=False)]
    distinct = np.unique(sample, axis=0).shape[0]
    scores: dict[int, float] = {}
    with _one_thread():
        for k in range(k_range[0], min(k_range[1], distinct - 1) + 1):
            labels = KMeans(n_clusters=k, n_init=KMEANS_INIT, random_state=seed).fit_predict(sample)
            if np.unique(labels).size > 1:
                scores[k] = float(silhouette_score(sample, labels))
    return scores


def _fit(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    fit_rows = x if x.shape[0] <= FIT_SAMPLE else x[rng.choice(x.shape[0], size=FIT_SAMPLE, replace=False)]
    with _one_thread():
        model = KMeans(n_clusters=k, n_init=KMEANS_INIT, random_state=seed).fit(fit_rows)
        labels: np.ndarray = model.predict(x)
    return labels


def _one_thread() -> Any:
    """scikit-learn's OpenMP threads spin-wait: on two shared cores k-means of 4k rows took 5 s instead of 0.1 s."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    return threadpool_limits(limits=1)


def _means(columns: dict[str, np.ndarray], names: Sequence[str], members: np.ndarray) -> dict[str, float]:
    return {name: float(np.mean(columns[name][members])) if members.any() else 0.0 for name in names}


def _outcome_columns(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The OUTCOMES columns of each user: what the segments are described by, never clustered on."""
    return {
        **{name: features[name] for name in OUTCOMES if name in features},
        "buyer_share": (features["purchases_total"] > 0).astype(np.float64),
    }


def _order(features: dict[str, np.ndarray], labels: np.ndarray, k: int) -> np.ndarray:
    """Relabel clusters so id 0 converts best (then: more sessions, more users): stable ids for equal data."""
    keys = []
    for c in range(k):
        members = labels == c
        keys.append(
            (
                -float(features["session_conversion_rate"][members].mean()) if members.any() else 0.0,
                -float(features["frequency_sessions"][members].mean()) if members.any() else 0.0,
                -int(members.sum()),
                c,
            )
        )
    rank = np.empty(k, dtype=np.int64)
    rank[[key[-1] for key in sorted(keys)]] = np.arange(k)
    result: np.ndarray = rank[labels]
    return result


def user_behaviour(events: SessionEvents, stages: np.ndarray, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every BEHAVIOUR column per user (users sorted, as `user_features` returns them)."""
    users, user_of_session = np.unique(events.session_user, return_inverse=True)
    return {
        "frequency_sessions": features["frequency_sessions"].astype(np.float64),
        "recency_days": features["recency_days"],
        **behaviour_features(events, stages, user_of_session.reshape(-1), users.size),
    }


def build_profiles(
    events: SessionEvents, stages: np.ndarray, seed: int, k_range: tuple[int, int] = K_RANGE
) -> Profiles:
    """Profiles of every user with events, and their segments; deterministic for equal data and seed."""
    users, features, as_of = user_features(events, stages)
    behaviour = user_behaviour(events, stages, features)
    basis, columns, why = segment_basis(features["frequency_sessions"])
    notes = [f"segments: {why}"] if basis == IN_SESSION else []
    x = design(behaviour, columns)
    scores = _choose_k(x, seed, k_range) if users.size >= 3 else {}
    if scores:
        k = max(scores, key=lambda kk: (scores[kk], -kk))
        labels = _order(features, _fit(x, k, seed), k)
    else:
        k, labels = 1, np.zeros(users.size, dtype=np.int64)
        notes.append(f"{users.size} users with too few distinct profiles for k >= {k_range[0]}: one segment")
    outcomes = _outcome_columns(features)
    everyone = np.ones(users.size, dtype=bool)
    means = [_means(behaviour, list(BEHAVIOUR), labels == c) for c in range(k)]
    names = name_segments(means, _means(behaviour, list(BEHAVIOUR), everyone), (*columns, *DESCRIBED)) if k > 1 else []
    segments = tuple(
        Segment(c, names[c] if names else "all shoppers", int((labels == c).sum()), means[c],
                _means(outcomes, list(outcomes), labels == c))
        for c in range(k)
    )  # fmt: skip
    empty = [s.name for s in segments if s.users == 0]
    if empty:
        notes.append(f"segments without users after labelling everybody: {empty}")
    log.info("user profiles built", extra={"users": int(users.size), "k": k, "silhouette": scores.get(k)})
    return Profiles(
        as_of, users, features, labels.astype(np.int64), segments, scores, tuple(notes), behaviour, basis, columns, why
    )


# ------------------------------------------------------------------------------------------------------ the store


def write_profiles(profiles: Profiles, settings: Settings, created: datetime | None = None) -> dict[str, Any]:
    """Replace the `user_profile` offline table, then upsert every profile into the online store.

    Written straight to the online store rather than through incremental materialisation: a rerun on the same data
    (another seed, say) has the same `as_of`, which an incremental run would call up to date. The interval is
    recorded like a materialisation's, so `journey features materialize` does not write the rows a second time.
    Runs `feast apply` first when the registry does not know the view yet.
    """
    table = profiles.table(created)
    location = OfflineTables(settings).write(USER_PROFILE, table, "replace")
    applied = not _registered(settings)
    if applied:
        apply(settings)
    with opened_store(settings) as store:
        written = write_online(store, USER_PROFILE, table) if table.num_rows else 0
        view = store.get_feature_view(USER_PROFILE)
        store.registry.apply_materialization(view, store.project, profiles.as_of - timedelta(seconds=1), profiles.as_of)
    log.info("user profiles written", extra={"offline": location, "online_rows": written, "applied": applied})
    return {"offline": location, "online_rows": written, "feast_apply": applied}


def _registered(settings: Settings) -> bool:
    from feast.errors import FeatureViewNotFoundException  # Feast is imported lazily (journey.stores.feature_store)

    with opened_store(settings) as store:
        try:
            store.get_feature_view(USER_PROFILE, allow_registry_cache=False)
        except FeatureViewNotFoundException:
            return False
    return True
