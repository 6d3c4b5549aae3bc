"""user_profile in the prod profile: PostgreSQL offline table + Redis online store, read back through Feast.

The module's project, offline schema and Redis keys are removed by the `prod_store` fixture (conftest.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from journey.contracts import JOURNEY_PROFILE_V1, USER, USER_PROFILE, USER_PROFILE_FEATURES
from journey.datasets.synthetic import SyntheticConfig, generate
from journey.settings import get_settings
from journey.stages import assign_stages, session_order
from journey.stores.offline import OfflineTables
from training.analysis.profiles import Profiles, build_profiles, write_profiles

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def profiles() -> Profiles:
    data = generate(SyntheticConfig(n_users=400, n_items=500, days=5, seed=8))
    ordered = session_order(data.events)
    return build_profiles(ordered, assign_stages(ordered.session, ordered.item, ordered.event_type), seed=1)


def test_profiles_land_in_postgres_and_redis(prod_store: Any, profiles: Profiles) -> None:
    settings = get_settings()
    created = datetime(2026, 11, 1, tzinfo=UTC)
    written = write_profiles(profiles, settings, created=created)
    assert written["online_rows"] == profiles.user_id.size and not written["feast_apply"]
    assert written["offline"] == f"{settings.offline_schema}.{USER_PROFILE}"

    offline = OfflineTables(settings).read(USER_PROFILE).sort_by(USER)
    expected = profiles.table(created)
    assert offline.column_names == expected.column_names
    assert offline["segment_name"].to_pylist() == expected["segment_name"].to_pylist()
    assert np.allclose(offline["monetary_value"].to_numpy(), expected["monetary_value"].to_numpy())

    users = [int(u) for u in profiles.user_id[::7]]
    online = prod_store.get_online_features(
        features=prod_store.get_feature_service(JOURNEY_PROFILE_V1), entity_rows=[{USER: u} for u in users]
    ).to_dict()
    rows = expected.take(pa.array(np.arange(profiles.user_id.size)[::7])).to_pydict()
    for name in USER_PROFILE_FEATURES:
        assert online[name] == pytest.approx(rows[name]), name
    assert online["journey_stage"] == [None] * len(users)  # user_activity was never built in this project


def test_a_rerun_replaces_the_profiles(prod_store: Any, profiles: Profiles) -> None:
    settings = get_settings()
    renamed = Profiles(
        profiles.as_of,
        profiles.user_id,
        profiles.features,
        profiles.segment,
        tuple(s.__class__(s.segment_id, f"{s.name} v2", s.users, s.means) for s in profiles.segments),
        profiles.silhouette_by_k,
    )
    write_profiles(renamed, settings)
    user = int(profiles.user_id[0])
    online = prod_store.get_online_features(
        features=[f"{USER_PROFILE}:segment_name"], entity_rows=[{USER: user}]
    ).to_dict()
    assert online["segment_name"][0].endswith(" v2")
