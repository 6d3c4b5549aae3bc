"""User profiles: RFM and behaviour by hand, segments and their names, and the user_profile view in Feast (local)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from journey.contracts import JOURNEY_PROFILE_V1, SESSION_ACTIVITY, USER, USER_PROFILE, USER_PROFILE_FEATURES
from journey.datasets.store import DatasetStore
from journey.datasets.synthetic import SyntheticConfig, generate
from journey.events import EVENT_SCHEMA
from journey.settings import Settings
from journey.stages import POST_PURCHASE, assign_stages, session_order
from training.analysis.profiles import CLUSTER_FEATURES, Profiles, build_profiles, name_segments, user_features

T0 = datetime(2026, 9, 1, tzinfo=UTC)


def table(rows: Sequence[tuple[int, str, int, str, float, float | None]]) -> pa.Table:
    """(user, session, item, type, hours after T0, price) rows."""
    return pa.table(
        {
            "event_id": [f"e{i}" for i in range(len(rows))],
            "user_id": [r[0] for r in rows],
            "session_id": [r[1] for r in rows],
            "item_id": [r[2] for r in rows],
            "event_type": [r[3] for r in rows],
            "event_timestamp": [T0 + timedelta(hours=r[4]) for r in rows],
            "price": [r[5] for r in rows],
            "category_id": [1] * len(rows),
        },
        schema=EVENT_SCHEMA,
    )


SHOP = [
    # user 1: two sessions, buys 10.0 in the first, carts and leaves in the second
    (1, "1a", 1, "view", 0.0, 10.0),
    (1, "1a", 1, "add_to_cart", 0.1, 10.0),
    (1, "1a", 1, "purchase", 0.2, 10.0),
    (1, "1a", 2, "view", 0.3, 4.0),
    (1, "1b", 2, "add_to_cart", 24.0, 4.0),
    # user 2: one session of views, a day before the end
    (2, "2a", 3, "view", 24.0, None),
    (2, "2a", 4, "view", 24.5, None),
    # user 3: the last event of the data (as_of = 48 h)
    (3, "3a", 5, "view", 48.0, 2.0),
]


def test_user_features_by_hand() -> None:
    ordered = session_order(table(SHOP))
    users, f, as_of = user_features(ordered, assign_stages(ordered.session, ordered.item, ordered.event_type))
    assert users.tolist() == [1, 2, 3] and as_of == T0 + timedelta(hours=48)
    assert f["recency_days"].tolist() == pytest.approx([1.0, 23.5 / 24, 0.0])
    assert f["frequency_sessions"].tolist() == [2, 1, 1]
    assert f["monetary_value"].tolist() == [10.0, 0.0, 0.0] and f["purchases_total"].tolist() == [1, 0, 0]
    assert f["events_per_session"].tolist() == [2.5, 2.0, 1.0]
    assert f["session_conversion_rate"].tolist() == [0.5, 0.0, 0.0]
    assert f["session_cart_rate"].tolist() == [1.0, 0.0, 0.0]
    assert f["cart_abandonment_rate"].tolist() == [0.5, 0.0, 0.0]  # 1b carted without buying
    assert f["last_stage"].tolist() == [1, 0, 0]  # user 1 ended on an add_to_cart (1b), not post-purchase
    assert f["r_score"].tolist() == [1, 2, 3] and f["m_score"].tolist()[0] == 3  # 3 users: tiles 1..3


def test_last_stage_after_a_purchase_is_post_purchase() -> None:
    rows = [(1, "s", 1, "purchase", 0.0, 1.0), (1, "s", 2, "view", 0.1, 1.0), (2, "t", 1, "view", 0.2, 1.0)]
    ordered = session_order(table(rows))
    _, f, _ = user_features(ordered, assign_stages(ordered.session, ordered.item, ordered.event_type))
    assert f["last_stage"].tolist() == [POST_PURCHASE, 0]


def test_names_follow_the_segment_means_and_never_repeat() -> None:
    overall = {
        "recency_days": 5.0,
        "frequency_sessions": 3.0,
        "events_per_session": 5.0,
        "monetary_value": 20.0,
        "session_conversion_rate": 0.1,
        "session_cart_rate": 0.4,
        "cart_abandonment_rate": 0.5,
    }
    loyal = {**overall, "session_conversion_rate": 0.4, "frequency_sessions": 5.0}
    abandoners = {**overall, "session_conversion_rate": 0.0, "session_cart_rate": 0.6, "cart_abandonment_rate": 1.0}
    window = {**overall, "session_conversion_rate": 0.0, "session_cart_rate": 0.0, "events_per_session": 8.0}
    recent = {**overall, "session_conversion_rate": 0.05, "recency_days": 1.0}
    lapsed = {**overall, "session_conversion_rate": 0.05, "recency_days": 6.0}
    names = name_segments([loyal, abandoners, window, recent, lapsed], overall)
    assert names[:3] == ["loyal buyers", "cart abandoners", "window shoppers"]
    assert names[3:] == ["casual browsers (recent)", "casual browsers (lapsed)"]
    assert len(set(name_segments([recent, recent, recent], overall))) == 3


@pytest.fixture(scope="module")
def profiles() -> Profiles:
    data = generate(SyntheticConfig(n_users=3_000, n_items=2_000, days=10, seed=4))
    ordered = session_order(data.events)
    return build_profiles(ordered, assign_stages(ordered.session, ordered.item, ordered.event_type), seed=3)


def test_segments_are_chosen_by_silhouette_ordered_by_conversion_and_named(profiles: Profiles) -> None:
    assert 2 <= profiles.k <= 6 and profiles.silhouette == max(profiles.silhouette_by_k.values())
    rates = [s.means["session_conversion_rate"] for s in profiles.segments]
    assert rates == sorted(rates, reverse=True)
    assert len({s.name for s in profiles.segments}) == profiles.k
    assert sum(s.users for s in profiles.segments) == profiles.user_id.size
    assert set(profiles.segments[0].means) == set(CLUSTER_FEATURES)


def test_same_data_and_seed_give_the_same_segments(profiles: Profiles) -> None:
    data = generate(SyntheticConfig(n_users=3_000, n_items=2_000, days=10, seed=4))
    ordered = session_order(data.events)
    again = build_profiles(ordered, assign_stages(ordered.session, ordered.item, ordered.event_type), seed=3)
    assert np.array_equal(again.segment, profiles.segment) and again.silhouette_by_k == profiles.silhouette_by_k


def test_segment_of_unknown_users_is_minus_one(profiles: Profiles) -> None:
    known = int(profiles.user_id[5])
    assert profiles.segment_of(np.array([known, -7])).tolist() == [int(profiles.segment[5]), -1]


def test_profile_table_follows_the_contract(profiles: Profiles) -> None:
    rows = profiles.table()
    assert rows.column_names == [USER, "event_timestamp", "created", *USER_PROFILE_FEATURES]
    assert rows.schema.field("segment_name").type == pa.string()
    assert rows.num_rows == profiles.user_id.size
    for score in ("r_score", "f_score", "m_score"):
        assert set(rows[score].to_pylist()) <= {1, 2, 3, 4, 5}


def test_profiles_land_in_the_local_online_store_and_materialise_skips_them_until_written(
    profiles: Profiles, settings: Settings
) -> None:
    from journey.session_features import session_rows
    from journey.stores.feature_store import apply, materialize, opened_store
    from journey.stores.offline import OfflineTables
    from training.analysis.profiles import write_profiles
    from training.features import build_features

    data = generate(SyntheticConfig(n_users=150, n_items=300, days=4, seed=3))
    DatasetStore(settings.events_dir).write("shop", data.events, source={"kind": "test"})
    build_features("shop", settings)
    OfflineTables(settings).write(SESSION_ACTIVITY, session_rows(data.events), "replace")
    apply(settings)
    stats = materialize(settings, end=datetime.now(UTC))  # no user_profile table yet: skipped, not an error
    assert USER_PROFILE not in stats and "user_activity" in stats

    written = write_profiles(profiles, settings)
    assert written["online_rows"] == profiles.user_id.size and not written["feast_apply"]
    assert OfflineTables(settings).read(USER_PROFILE).num_rows == profiles.user_id.size
    users = [int(u) for u in profiles.user_id[:25]]
    with opened_store(settings) as store:
        online = store.get_online_features(
            features=store.get_feature_service(JOURNEY_PROFILE_V1), entity_rows=[{USER: u} for u in users]
        ).to_dict()
    expected = profiles.table().take(pa.array(np.arange(25))).to_pydict()
    for name in USER_PROFILE_FEATURES:
        assert online[name] == pytest.approx(expected[name]), name
    assert "journey_stage" in online
