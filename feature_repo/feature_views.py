"""Feature views: daily user and item snapshots (batch), and live session activity (push)."""

from datetime import timedelta

from data_sources import item_popularity_source, session_activity_push, user_activity_source, user_profile_source
from entities import item, session, user
from feast import FeatureView
from feast.field import Field
from feast.types import Array, Float64, Int64, PrimitiveFeastType, String

from journey.contracts import (
    ITEM_POPULARITY,
    ITEM_POPULARITY_FEATURES,
    SESSION_ACTIVITY,
    SESSION_ACTIVITY_FEATURES,
    USER,
    USER_ACTIVITY,
    USER_ACTIVITY_FEATURES,
    USER_PROFILE,
    USER_PROFILE_FEATURES,
    FeatureType,
)

_TYPES: dict[FeatureType, PrimitiveFeastType | Array] = {
    "int64": Int64,
    "float64": Float64,
    "string": String,
    "int64_list": Array(Int64),
    "string_list": Array(String),
}


def _fields(features: dict[str, FeatureType]) -> list[Field]:
    return [Field(name=name, dtype=_TYPES[kind]) for name, kind in features.items()]


user_activity = FeatureView(
    name=USER_ACTIVITY,
    entities=[user],
    ttl=timedelta(days=2),  # daily snapshots: a row older than two days means the pipeline stopped
    schema=_fields(USER_ACTIVITY_FEATURES),
    source=user_activity_source,
    online=True,
    description="Behaviour of a shopper over the last 1/7/30 days, as of each UTC midnight.",
    tags={"team": "journey", "refresh": "daily"},
)

item_popularity = FeatureView(
    name=ITEM_POPULARITY,
    entities=[item],
    ttl=timedelta(days=2),
    schema=_fields(ITEM_POPULARITY_FEATURES),
    source=item_popularity_source,
    online=True,
    description="Popularity and funnel rates of an item over the last 7 days, as of each UTC midnight.",
    tags={"team": "journey", "refresh": "daily"},
)

session_activity = FeatureView(
    name=SESSION_ACTIVITY,
    entities=[session],
    ttl=timedelta(hours=12),
    schema=[Field(name=USER, dtype=Int64), *_fields(SESSION_ACTIVITY_FEATURES)],
    source=session_activity_push,
    online=True,
    description="The session so far, pushed on every event: counts, age, and the last events and items.",
    tags={"team": "journey", "refresh": "real-time"},
)

user_profile = FeatureView(
    name=USER_PROFILE,
    entities=[user],
    ttl=timedelta(days=30),  # one snapshot per analysis run, as of the end of its data
    schema=_fields(USER_PROFILE_FEATURES),
    source=user_profile_source,
    online=True,
    description="Who a shopper is over their whole history: RFM, behaviour, last stage and k-means segment.",
    tags={"team": "journey", "refresh": "per analysis (journey analyze)"},
)
