"""Names and types shared by the Feast repo, batch feature computation, training and serving.

This module is the one list: `feature_repo/` declares its views from it, `training/features.py` must produce
exactly these columns (a test checks), and models bind to feature *services* by the names below. Changing a feature
means a new service version (`..._v2`), never an edit of a published one. It also says where the feature repo's
batch rows live (`offline_location`), since the repo may import nothing else of ours.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

FeatureType = Literal["int64", "float64", "string", "int64_list", "string_list"]

# Entities (join keys)
USER: Final = "user_id"
ITEM: Final = "item_id"
SESSION: Final = "session_id"

# Feature views
USER_ACTIVITY: Final = "user_activity"
ITEM_POPULARITY: Final = "item_popularity"
SESSION_ACTIVITY: Final = "session_activity"
REQUEST_CONTEXT: Final = "request_context"  # on-demand view over request-time inputs
SESSION_PUSH_SOURCE: Final = "session_activity_push"
USER_PROFILE: Final = (
    "user_profile"  # written by `journey analyze` (training/analysis/profiles.py), not by features build
)

# Feature services: model contracts
PURCHASE_PROPENSITY_V1: Final = "purchase_propensity_v1"
NEXT_ACTION_V1: Final = "next_action_v1"
NEXT_ITEM_V1: Final = "next_item_v1"  # the session's last items and event types: what the recommender reads
JOURNEY_PROFILE_V1: Final = "journey_profile_v1"  # what /journey/{user_id} reads: user_profile + the daily stage
JOURNEY_SESSION_V1: Final = "journey_session_v1"  # and, given ?session_id=, that session's last events

# Journey stages as ordinals (user_activity.journey_stage); exit is not a state a user is "in"
STAGES: Final = ("discovery", "consideration", "purchase", "post_purchase")

WINDOWS: Final = (1, 7, 30)
_COUNTED = {"view": "views", "add_to_cart": "carts", "remove_from_cart": "removes", "purchase": "purchases"}

USER_ACTIVITY_FEATURES: Final[dict[str, FeatureType]] = {
    **{f"{plural}_{w}d": "int64" for plural in _COUNTED.values() for w in WINDOWS},
    "distinct_items_30d": "int64",
    "distinct_categories_30d": "int64",
    "sessions_30d": "int64",
    "conversion_rate_30d": "float64",  # purchases / sessions, 30 days
    "cart_abandonment_rate_30d": "float64",  # sessions with a cart and no purchase / sessions with a cart
    "avg_viewed_price_30d": "float64",  # NaN when nothing priced was viewed
    "avg_purchased_price_30d": "float64",
    "days_since_last_purchase": "float64",  # NaN when never purchased
    "seconds_since_last_event": "float64",
    "rfm_recency": "int64",  # 1..5 quintile scores among users active in the snapshot (5 = best)
    "rfm_frequency": "int64",
    "rfm_monetary": "int64",
    "journey_stage": "int64",  # ordinal index into STAGES of the user's last event before the snapshot
}

ITEM_POPULARITY_FEATURES: Final[dict[str, FeatureType]] = {
    "item_views_7d": "int64",
    "item_carts_7d": "int64",
    "item_purchases_7d": "int64",
    "view_to_cart_rate_7d": "float64",
    "cart_to_purchase_rate_7d": "float64",
    "item_price": "float64",  # last price seen before the snapshot
    "item_category_id": "int64",
}

LAST_N_EVENTS: Final = 20
# The four lists are aligned: element i of each describes the same event. `session_last_event_ts` and
# `session_last_category_ids` were added to next_action_v1 (which projects every session feature) before any model
# was registered on it; purchase_propensity_v1 projects a fixed subset and is unchanged.
SESSION_ACTIVITY_FEATURES: Final[dict[str, FeatureType]] = {
    "session_events": "int64",
    "session_views": "int64",
    "session_carts": "int64",
    "session_purchases": "int64",
    "session_seconds_since_start": "float64",  # at the last event of the session
    "session_last_item_ids": "int64_list",  # newest last, at most LAST_N_EVENTS
    "session_last_event_types": "string_list",
    "session_last_event_ts": "int64_list",  # unix seconds of each of those events
    "session_last_category_ids": "int64_list",  # -1 for an event without a category
}
SESSION_ACTIVITY_EXTRA_COLUMNS: Final = ("user_id", "event_timestamp", "created")

REQUEST_INPUTS: Final[dict[str, FeatureType]] = {
    "candidate_price": "float64",
    "request_ts": "int64",
    "candidate_item_id": "int64",  # the item being scored (also the item_popularity join key)
}
REQUEST_CONTEXT_FEATURES: Final[dict[str, FeatureType]] = {
    "price_vs_user_avg_viewed": "float64",  # candidate price / user's average viewed price (1.0 when unknown)
    "request_hour": "int64",
    "request_weekday": "int64",
}

# On-demand view: the candidate item within the current session (what the last events say about *this* item).
# Added to purchase_propensity_v1 before any model was registered on it.
SESSION_ITEM_CONTEXT: Final = "session_item_context"
SESSION_ITEM_CONTEXT_FEATURES: Final[dict[str, FeatureType]] = {
    "candidate_session_views": "int64",  # views of the candidate among the session's last events
    "candidate_in_cart": "int64",  # adds minus removes of the candidate there, floored at 0
    "candidate_is_last_carted": "int64",  # 1 when the most recent add_to_cart there is the candidate
    "candidate_events_since_first_seen": "int64",  # events since the candidate's first event there (-1: not there)
}

# User profiles as of the end of the analysed data: RFM, behaviour, and the k-means segment they fall in.
USER_PROFILE_FEATURES: Final[dict[str, FeatureType]] = {
    "segment_id": "int64",  # 0..k-1, ordered by the segment's session conversion rate (0 = highest)
    "segment_name": "string",  # readable, derived from the segment's centroid ("cart users", "window shoppers", ...)
    "recency_days": "float64",  # days from the user's last event to the end of the data
    "frequency_sessions": "int64",
    "monetary_value": "float64",  # sum of purchase prices (an unpriced purchase adds 0)
    "purchases_total": "int64",
    "events_per_session": "float64",
    "session_conversion_rate": "float64",  # sessions with a purchase / sessions
    "session_cart_rate": "float64",  # sessions with an add_to_cart / sessions
    "cart_abandonment_rate": "float64",  # sessions with a cart and no purchase / sessions with a cart (0: none)
    "r_score": "int64",  # 1..5 quintiles among all profiled users (5 = most recent / frequent / spending)
    "f_score": "int64",
    "m_score": "int64",
    "last_stage": "int64",  # ordinal index into STAGES of the user's last event
}

SNAPSHOT_TIMESTAMP: Final = "event_timestamp"  # Feast's event timestamp column of batch views
CREATED_TIMESTAMP: Final = "created"

# Model names as the registry knows them, and the serving endpoint each one answers.
PURCHASE_PROPENSITY_MODEL: Final = "purchase_propensity"
NEXT_ACTION_MODEL: Final = "next_action"
NEXT_ITEM_MODEL: Final = "next_item"
# The serving endpoints that answer with a model, and which model answers each: a route of `predict_purchase` may
# only name purchase_propensity versions.
PREDICT_PURCHASE: Final = "predict_purchase"
PREDICT_NEXT_ACTION: Final = "predict_next_action"
RECOMMEND: Final = "recommend"
ENDPOINT_MODELS: Final[Mapping[str, str]] = MappingProxyType(
    {
        PREDICT_PURCHASE: PURCHASE_PROPENSITY_MODEL,
        PREDICT_NEXT_ACTION: NEXT_ACTION_MODEL,
        RECOMMEND: NEXT_ITEM_MODEL,
    }
)

# Where the feature repo's batch sources live, per profile. `feature_repo/data_sources.py` asks `offline_location()`
# when Feast imports it. The answer comes from the JOURNEY_* variables that journey.settings reads (same names, same
# defaults) and not from the settings themselves: the repo imports this module only, and a Feast user's
# `feast -f prod/feature_store.yaml apply` must not need what a prod Journey process needs (an admin token). Journey's
# own apply passes the environment its settings imply (`feature_repo_environment`), so tests that switch profiles or
# data folders inside one process never touch os.environ.
PROFILE_VARIABLE: Final = "JOURNEY_PROFILE"
DATA_DIR_VARIABLE: Final = "JOURNEY_DATA_DIR"
OFFLINE_SCHEMA_VARIABLE: Final = "JOURNEY_OFFLINE_SCHEMA"
DEFAULT_DATA_DIR: Final = Path(__file__).resolve().parent.parent / "data"  # journey.settings' default (a test checks)
DEFAULT_OFFLINE_SCHEMA: Final = "journey"
OfflineKind = Literal["file", "postgres"]


@dataclass(frozen=True)
class OfflineLocation:
    """Parquet files in the folder `place` (`file`, local profile) or tables in the PostgreSQL schema `place`
    (`postgres`, prod profile)."""

    kind: OfflineKind
    place: str

    def of(self, view: str) -> str:
        """The path (file) or `schema.table` (postgres) of one view's batch rows."""
        return str(Path(self.place) / f"{view}.parquet") if self.kind == "file" else f"{self.place}.{view}"


_repo_environment: ContextVar[Mapping[str, str] | None] = ContextVar("journey_repo_environment", default=None)


def offline_location() -> OfflineLocation:
    """The active profile's offline location: `feature_repo_environment`'s mapping when one is active, else
    os.environ (what Feast's own CLI sees)."""
    environment = _repo_environment.get()
    env = os.environ if environment is None else environment
    profile = env.get(PROFILE_VARIABLE) or "local"
    if profile == "prod":
        return OfflineLocation("postgres", env.get(OFFLINE_SCHEMA_VARIABLE) or DEFAULT_OFFLINE_SCHEMA)
    if profile == "local":
        data_dir = Path(env.get(DATA_DIR_VARIABLE) or DEFAULT_DATA_DIR).expanduser().resolve()
        return OfflineLocation("file", str(data_dir / "offline"))
    raise ValueError(f"{PROFILE_VARIABLE}={profile!r}: expected 'local' or 'prod'")


@contextmanager
def feature_repo_environment(environment: Mapping[str, str]) -> Iterator[None]:
    """Make `offline_location()` read `environment` instead of os.environ inside the block (this context only)."""
    token = _repo_environment.set(environment)
    try:
        yield
    finally:
        _repo_environment.reset(token)
