"""Where feature rows live, per profile: Parquet files (`local`) or PostgreSQL tables (`prod`).

Locations come from Journey settings (JOURNEY_PROFILE, JOURNEY_DATA_DIR, JOURNEY_OFFLINE_SCHEMA), never from code.
"""

from feast import FileSource, PushSource
from feast.data_source import DataSource, RequestSource
from feast.field import Field
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
from feast.types import Float64, Int64

from journey.contracts import (
    CREATED_TIMESTAMP,
    ITEM_POPULARITY,
    SESSION_ACTIVITY,
    SESSION_PUSH_SOURCE,
    SNAPSHOT_TIMESTAMP,
    USER_ACTIVITY,
    USER_PROFILE,
)
from journey.settings import Profile, get_settings

_settings = get_settings()


def _batch_source(view: str) -> DataSource:
    if _settings.profile is Profile.PROD:
        return PostgreSQLSource(
            name=f"{view}_source",
            table=f"{_settings.offline_schema}.{view}",
            timestamp_field=SNAPSHOT_TIMESTAMP,
            created_timestamp_column=CREATED_TIMESTAMP,
        )
    return FileSource(
        name=f"{view}_source",
        path=str(_settings.offline_dir / f"{view}.parquet"),
        timestamp_field=SNAPSHOT_TIMESTAMP,
        created_timestamp_column=CREATED_TIMESTAMP,
    )


user_activity_source = _batch_source(USER_ACTIVITY)
item_popularity_source = _batch_source(ITEM_POPULARITY)
session_activity_source = _batch_source(SESSION_ACTIVITY)
user_profile_source = _batch_source(USER_PROFILE)  # written by `journey analyze`

# Real-time session features arrive through /events -> push (online store, and the batch source for training).
session_activity_push = PushSource(name=SESSION_PUSH_SOURCE, batch_source=session_activity_source)

# Inputs only known when a prediction is requested.
request_inputs = RequestSource(
    name="request_inputs",
    schema=[
        Field(name="candidate_price", dtype=Float64),
        Field(name="request_ts", dtype=Int64),
        Field(name="candidate_item_id", dtype=Int64),
    ],
)
