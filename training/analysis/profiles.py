"""User profiles and segments: RFM + behaviour per user as of the end of the data, k-means segments with names.

    build_profiles(events, stages, seed)   -> Profiles (one row per user, a segment each)
    write_profiles(profiles, settings)     -> the `user_profile` offline table + the online store (Feast)

Why these choices:
- **Features** are computed from the whole history up to the last event (not windowed like `user_activity`): a
  segment describes who a shopper is, not what they did this week. k-means sees log-scaled counts (recency, sessions,
  events per session, spend) and the session rates (conversion, cart, abandonment), each standardised; a column with
  no spread (no prices at all, say) weighs nothing.
- **k** is the one in `K_RANGE` with the best silhouette, scored on a seeded sample of users (silhouette is O(n^2));
  the final k-means runs on up to `FIT_SAMPLE` users and labels everybody. Same data + seed, same segments.
- **Segment ids** are ordered by session conversion rate (0 = best), so ids are stable across reruns of equal data.
- **Names** come from each segment's mean profile against the whole population ("loyal buyers" convert more and come
  back more, "cart abandoners" cart often and rarely buy, "window shoppers" browse long sessions without buying, ...);
  names that collide get the trait that tells them apart. They are labels for people, not model inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
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

# what k-means sees, and whether the column is a count (log-scaled) or a rate
CLUSTER_FEATURES: Final = {
    "recency_days": True,
    "frequency_sessions": True,
    "events_per_session": True,
    "monetary_value": True,
    "session_conversion_rate": False,
    "session_cart_rate": False,
    "cart_abandonment_rate": False,
}
# how to tell apart two segments that got the same name: (feature, word when higher, word when lower)
_QUALIFIERS: Final = (
    ("recency_days", "lapsed", "recent"),
    ("frequency_sessions", "frequent", "occasional"),
    ("events_per_session", "long sessions", "short sessions"),
    ("monetary_value", "big spenders", "small spenders"),
    ("session_conversion_rate", "converting", "rarely converting"),
    ("session_cart_rate", "carting", "rarely carting"),
    ("cart_abandonment_rate", "abandoning", "completing"),
)


@dataclass(frozen=True)
class Segment:
    segment_id: int
    name: str
    users: int
    means: dict[str, float]  # mean of each CLUSTER_FEATURES column over the segment's users

    def to_dict(self) -> dict[str, Any]:
        return {"segment_id": self.segment_id, "name": self.name, "users": self.users, "means": self.means}


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


def _design(features: dict[str, np.ndarray]) -> np.ndarray:
    """Standardised k-means inputs; a constant column becomes zeros (it cannot separate anyone)."""
    cols = []
    for name, is_count in CLUSTER_FEATURES.items():
        values = np.asarray(features[name], dtype=np.float64)
        values = np.log1p(np.maximum(values, 0)) if is_count else values
        spread = values.std()
        cols.append((values - values.mean()) / spread if spread > 1e-12 else np.zeros_like(values))
    return np.column_stack(cols)


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


def _means(features: dict[str, np.ndarray], members: np.ndarray) -> dict[str, float]:
    return {name: float(np.mean(features[name][members])) if members.any() else 0.0 for name in CLUSTER_FEATURES}


def _base_name(seg: dict[str, float], overall: dict[str, float]) -> str:
    """A name from the segment's means relative to everybody's (first rule that holds)."""
    if seg["session_conversion_rate"] > max(1.5 * overall["session_conversion_rate"], 1e-9):
        return "loyal buyers" if seg["frequency_sessions"] >= overall["frequency_sessions"] else "occasional buyers"
    carts_often = seg["session_cart_rate"] >= max(overall["session_cart_rate"], 0.01)
    if carts_often and seg["cart_abandonment_rate"] >= 0.75:
        return "cart abandoners"
    if seg["session_cart_rate"] < 0.5 * overall["session_cart_rate"] and (
        seg["events_per_session"] >= overall["events_per_session"]
    ):
        return "window shoppers"
    if overall["recency_days"] > 0 and seg["recency_days"] >= 1.5 * overall["recency_days"]:
        return "lapsed visitors"
    if seg["frequency_sessions"] >= 1.5 * overall["frequency_sessions"]:
        return "frequent browsers"
    return "casual browsers"


def name_segments(means: Sequence[dict[str, float]], overall: dict[str, float]) -> list[str]:
    """Readable, distinct names: colliding ones get the trait on which they differ most (relative to its mean)."""
    names = [_base_name(m, overall) for m in means]
    for name in sorted(set(names)):
        group = [i for i, n in enumerate(names) if n == name]
        if len(group) < 2:
            continue
        spread = [
            (np.ptp([means[i][f] for i in group]) / max(abs(overall[f]), 1e-9), f, hi, lo) for f, hi, lo in _QUALIFIERS
        ]
        _, feature, higher, lower = max(spread)
        middle = float(np.median([means[i][feature] for i in group]))
        for i in group:
            names[i] = f"{name} ({higher if means[i][feature] > middle else lower})"
    seen: dict[str, int] = {}
    for i, name in enumerate(names):  # still equal (3+ alike): number them
        seen[name] = seen.get(name, 0) + 1
        names[i] = name if seen[name] == 1 else f"{name} #{seen[name]}"
    return names


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


def build_profiles(
    events: SessionEvents, stages: np.ndarray, seed: int, k_range: tuple[int, int] = K_RANGE
) -> Profiles:
    """Profiles of every user with events, and their segments; deterministic for equal data and seed."""
    users, features, as_of = user_features(events, stages)
    notes: list[str] = []
    x = _design(features)
    scores = _choose_k(x, seed, k_range) if users.size >= 3 else {}
    if scores:
        k = max(scores, key=lambda kk: (scores[kk], -kk))
        labels = _order(features, _fit(x, k, seed), k)
    else:
        k, labels = 1, np.zeros(users.size, dtype=np.int64)
        notes.append(f"{users.size} users with too few distinct profiles for k >= {k_range[0]}: one segment")
    overall = _means(features, np.ones(users.size, dtype=bool))
    means = [_means(features, labels == c) for c in range(k)]
    names = name_segments(means, overall) if k > 1 else ["all shoppers"]
    segments = tuple(Segment(c, names[c], int((labels == c).sum()), means[c]) for c in range(k))
    empty = [s.name for s in segments if s.users == 0]
    if empty:
        notes.append(f"segments without users after labelling everybody: {empty}")
    log.info("user profiles built", extra={"users": int(users.size), "k": k, "silhouette": scores.get(k)})
    return Profiles(as_of, users, features, labels.astype(np.int64), segments, scores, tuple(notes))


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
