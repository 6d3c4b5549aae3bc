"""Where feature rows live, per profile: Parquet files (`local`) or PostgreSQL tables (`prod`).

The location comes from `journey.contracts.offline_location()`: JOURNEY_PROFILE, JOURNEY_DATA_DIR and
JOURNEY_OFFLINE_SCHEMA of the environment (`feast -f prod/feature_store.yaml apply`), or the environment that
Journey's own apply derives from its settings. Importing this module reads those variables and nothing else: no
settings, no folders, no connections.

The YAML (`-f`) and the variables are chosen separately, so each batch source checks, when `feast apply` validates it,
that the applied feature_store.yaml's offline store can read it: the prod YAML applied without JOURNEY_PROFILE=prod
fails before anything is registered, instead of putting Parquet paths into the prod project (and the local YAML
with JOURNEY_PROFILE=prod fails likewise).
"""

from typing import Any

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
    OfflineKind,
    offline_location,
)

# Feast offline store types (feature_store.yaml `offline_store.type`) that read each kind of source.
_READERS: dict[OfflineKind, frozenset[str]] = {"file": frozenset({"file", "dask"}), "postgres": frozenset({"postgres"})}
_PROFILE_OF: dict[OfflineKind, str] = {"file": "local", "postgres": "prod"}


def _refusing_other_stores(source: DataSource, kind: OfflineKind) -> DataSource:
    """Wrap the source's `validate(config)` (Feast calls it during apply) with the offline-store check.

    An instance attribute, not a subclass: Feast records a source's class by import path in the registry and
    imports it to read a PostgreSQL source back, and neither serving nor `feast serve` can import `data_sources`.
    """
    feast_validate = source.validate

    def validate(config: Any) -> None:
        store = config.offline_store.type
        if store not in _READERS[kind]:
            raise ValueError(
                f"{source.name} is a {kind} source (JOURNEY_PROFILE={_PROFILE_OF[kind]}), but this "
                f"feature_store.yaml's offline store is {store!r}: export the environment of that YAML's profile "
                f'first (eval "$(journey features env)", see feature_repo/README.md)'
            )
        feast_validate(config)

    source.validate = validate  # type: ignore[method-assign]  # on purpose: see the docstring
    return source


def _batch_source(view: str) -> DataSource:
    where = offline_location()
    source: DataSource
    if where.kind == "postgres":
        source = PostgreSQLSource(
            name=f"{view}_source",
            table=where.of(view),
            timestamp_field=SNAPSHOT_TIMESTAMP,
            created_timestamp_column=CREATED_TIMESTAMP,
        )
    else:
        source = FileSource(
            name=f"{view}_source",
            path=where.of(view),
            timestamp_field=SNAPSHOT_TIMESTAMP,
            created_timestamp_column=CREATED_TIMESTAMP,
        )
    return _refusing_other_stores(source, where.kind)


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
