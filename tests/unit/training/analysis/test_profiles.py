"""User profiles: RFM and behaviour by hand, segments that never see the outcome, their names, the recovery of the
synthetic shop's known segments, and the user_profile view in Feast (local)."""

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
from training.analysis.behaviour import BEHAVIOUR, HISTORY, IN_SESSION, OUTCOMES, behaviour_features
from training.analysis.profiles import Profiles, build_profiles, user_features
from training.analysis.segment_names import name_segments

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


def test_behaviour_by_hand_counts_only_what_comes_before_a_purchase() -> None:
    ordered = session_order(table(SHOP))
    users, sessions = np.unique(ordered.session_user, return_inverse=True)
    stages = assign_stages(ordered.session, ordered.item, ordered.event_type)
    f = behaviour_features(ordered, stages, sessions, users.size)
    # user 1: 1a = view, cart | purchase, view (after the purchase: outcome); 1b = cart
    assert f["views_per_session"].tolist() == [0.5, 2.0, 1.0]
    assert f["repeat_view_share"].tolist() == [0.0, 0.0, 0.0]
    assert f["cart_session_rate"].tolist() == [1.0, 0.0, 0.0]
    assert f["category_focus"].tolist() == [1.0, 1.0, 1.0]
    assert f["seconds_per_event"].tolist() == pytest.approx([360 / 3, 1800 / 2, 0.0])


def test_a_purchase_and_what_follows_it_never_change_the_behaviour() -> None:
    browse = [(1, "a", 1, "view", 0.0, 1.0), (1, "a", 2, "view", 0.1, 1.0), (1, "a", 1, "view", 0.2, 1.0)]
    buys = [*browse, (1, "a", 1, "purchase", 0.3, 1.0), (1, "a", 3, "view", 0.4, 1.0), (1, "a", 3, "view", 0.9, 1.0)]
    rows = [browse, buys]
    got = []
    for events in rows:
        ordered = session_order(table(events))
        stages = assign_stages(ordered.session, ordered.item, ordered.event_type)
        got.append(behaviour_features(ordered, stages, np.zeros(ordered.n_sessions, dtype=np.int64), 1))
    assert {k: v.tolist() for k, v in got[0].items()} == {k: v.tolist() for k, v in got[1].items()}
    assert got[0]["repeat_view_share"].tolist() == [pytest.approx(1 / 3)]


def test_names_follow_the_segment_behaviour_and_never_repeat() -> None:
    overall = {
        "frequency_sessions": 3.0,
        "recency_days": 5.0,
        "views_per_session": 5.0,
        "repeat_view_share": 0.2,
        "cart_session_rate": 0.2,
        "category_focus": 0.5,
        "seconds_per_event": 40.0,
    }
    traits = ("frequency_sessions", "repeat_view_share", "cart_session_rate", "category_focus", "seconds_per_event")
    carters = {**overall, "cart_session_rate": 0.5, "frequency_sessions": 4.0}
    frequent = {**overall, "frequency_sessions": 6.0}
    window = {**overall, "views_per_session": 12.0}
    comparers = {**overall, "repeat_view_share": 0.5}
    bouncers = {**overall, "views_per_session": 1.0, "seconds_per_event": 2.0}
    focused = {**overall, "category_focus": 0.9}
    wide = {**overall, "category_focus": 0.2}
    names = name_segments([carters, frequent, comparers, bouncers, focused, wide], overall, traits)
    assert names[:4] == ["returning cart users", "frequent visitors", "comparison shoppers", "bouncers"]
    assert names[4:] == ["casual browsers (focused)", "casual browsers (wide-ranging)"]
    assert name_segments([window], overall, (*traits, "views_per_session")) == ["window shoppers"]
    assert name_segments([window], overall, traits) == ["casual browsers"]  # views per session: not a trait here
    one_session = ("repeat_view_share", "cart_session_rate", "category_focus", "seconds_per_event")
    assert name_segments([carters, frequent], overall, one_session)[0] == "cart users"  # frequency is not a trait
    assert len(set(name_segments([frequent, frequent, frequent], overall, traits))) == 3
    outcome_names = {"loyal buyers", "occasional buyers", "cart abandoners"}
    assert not outcome_names & {n.split(" (")[0] for n in names}


@pytest.fixture(scope="module")
def profiles() -> Profiles:
    data = generate(SyntheticConfig(n_users=3_000, n_items=2_000, days=10, seed=4))
    ordered = session_order(data.events)
    return build_profiles(ordered, assign_stages(ordered.session, ordered.item, ordered.event_type), seed=3)


def test_segments_are_chosen_by_silhouette_ordered_by_conversion_and_named(profiles: Profiles) -> None:
    assert 2 <= profiles.k <= 6 and profiles.silhouette == max(profiles.silhouette_by_k.values())
    rates = [s.outcomes["session_conversion_rate"] for s in profiles.segments]
    assert rates == sorted(rates, reverse=True)
    assert len({s.name for s in profiles.segments}) == profiles.k
    assert sum(s.users for s in profiles.segments) == profiles.user_id.size
    assert set(profiles.segments[0].means) == set(BEHAVIOUR) and set(profiles.segments[0].outcomes) == set(OUTCOMES)


def test_segments_never_see_the_outcome(profiles: Profiles) -> None:
    assert profiles.basis == HISTORY and "frequency_sessions" in profiles.clustered_on
    assert not set(profiles.clustered_on) & {*OUTCOMES, *USER_PROFILE_FEATURES} - {"frequency_sessions"}


def test_the_synthetic_shops_segments_are_recovered_at_least_as_well_as_by_rfm_and_conversion(
    profiles: Profiles,
) -> None:
    """The generator's latent segments (browser, deal seeker, loyal buyer, bot) against the k-means segments.

    The old clustering (RFM + session conversion, cart and abandonment rates) reached ARI 0.188 / NMI 0.186 on this
    data and seed; behaviour before purchases reaches 0.240 / 0.232 (and more in 8 of 8 shops tried, see
    behaviour.py). The bound leaves room for library noise, not for a return to the old level.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    data = generate(SyntheticConfig(n_users=3_000, n_items=2_000, days=10, seed=4))
    truth = dict(zip(data.users["user_id"].to_pylist(), data.users["segment"].to_pylist(), strict=True))
    latent = [truth[int(u)] for u in profiles.user_id]
    assert adjusted_rand_score(latent, profiles.segment) >= 0.21
    assert normalized_mutual_info_score(latent, profiles.segment) >= 0.21
    bots = [s for s in profiles.segments if s.means["seconds_per_event"] < 5]
    assert bots and all(truth[int(u)] != "bot" or profiles.segment[i] == bots[0].segment_id
                        for i, u in enumerate(profiles.user_id))  # fmt: skip


def test_a_one_session_log_is_segmented_on_in_session_behaviour_whatever_bought() -> None:
    """Half the shoppers buy in their one session: the segments must be the same as with the purchases removed."""
    rng = np.random.default_rng(5)
    rows: list[tuple[int, str, int, str, float, float | None]] = []
    for user in range(300):
        views, gap = int(rng.integers(1, 8)), float(rng.choice([0.001, 0.05]))
        rows += [(user, f"s{user}", int(rng.integers(50)), "view", user + i * gap, 5.0) for i in range(views)]
        if rng.random() < 0.3:
            rows.append((user, f"s{user}", 99, "add_to_cart", user + views * gap, 5.0))
        if user % 2:
            rows.append((user, f"s{user}", 99, "purchase", user + (views + 1) * gap, 5.0))
    with_outcome, without = (
        build_profiles(o, assign_stages(o.session, o.item, o.event_type), seed=1)
        for o in (session_order(table(rows)), session_order(table([r for r in rows if r[3] != "purchase"])))
    )
    assert with_outcome.basis == IN_SESSION and "frequency_sessions" not in with_outcome.clustered_on
    assert any("in-session behaviour only" in note for note in with_outcome.notes)
    same = {(a, b) for a, b in zip(with_outcome.segment.tolist(), without.segment.tolist(), strict=True)}
    assert len(same) == with_outcome.k == without.k  # the same partition (ids may differ: ordered by conversion)
    assert max(s.outcomes["session_conversion_rate"] for s in with_outcome.segments) < 1.0


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
