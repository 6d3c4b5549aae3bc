"""Batch features: known answers per feature family, window edges, the contract, and a no-leakage recomputation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from journey.contracts import ITEM_POPULARITY_FEATURES, STAGES, USER_ACTIVITY_FEATURES
from journey.datasets.store import DatasetStore
from journey.events import EVENT_SCHEMA
from journey.settings import Settings
from journey.stores.offline import OfflineTables
from training.features import build_features, compute_item_popularity, compute_user_activity

D = datetime(2026, 3, 10, tzinfo=UTC)  # the snapshot most tests look at
US = timedelta(microseconds=1)
CREATED = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
ARROW = {"int64": pa.int64(), "float64": pa.float64()}


@dataclass
class Ev:
    user: int
    type: str
    at: datetime
    item: int = 100
    session: str = "s1"
    price: float | None = 10.0
    category: int | None = 1


def events(rows: Sequence[Ev]) -> pa.Table:
    return pa.table(
        {
            "event_id": [f"e{n:05d}" for n in range(len(rows))],
            "user_id": [r.user for r in rows],
            "session_id": [r.session for r in rows],
            "item_id": [r.item for r in rows],
            "event_type": [r.type for r in rows],
            "event_timestamp": [r.at for r in rows],
            "price": [r.price for r in rows],
            "category_id": [r.category for r in rows],
        },
        schema=EVENT_SCHEMA,
    )


def user_row(table: pa.Table, user: int, day: datetime = D) -> dict[str, Any]:
    rows = [r for r in table.to_pylist() if r["user_id"] == user and r["event_timestamp"] == day]
    assert len(rows) == 1, f"expected one row for user {user} at {day}, got {len(rows)}"
    return rows[0]


def item_row(table: pa.Table, item: int, day: datetime = D) -> dict[str, Any]:
    rows = [r for r in table.to_pylist() if r["item_id"] == item and r["event_timestamp"] == day]
    assert len(rows) == 1, f"expected one row for item {item} at {day}, got {len(rows)}"
    return rows[0]


def users(rows: Sequence[Ev], snapshots: Sequence[date] | None = (D.date(),)) -> pa.Table:
    return compute_user_activity(events(rows), snapshots, CREATED)


def items(rows: Sequence[Ev], snapshots: Sequence[date] | None = (D.date(),)) -> pa.Table:
    return compute_item_popularity(events(rows), snapshots, CREATED)


# ------------------------------------------------------------------------------------------------------- contract


def test_user_activity_columns_and_types_are_exactly_the_contract() -> None:
    table = users([Ev(1, "view", D - timedelta(hours=3))])
    expected = [
        pa.field("user_id", pa.int64()),
        pa.field("event_timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("created", pa.timestamp("us", tz="UTC")),
    ] + [pa.field(name, ARROW[kind]) for name, kind in USER_ACTIVITY_FEATURES.items()]
    assert table.schema.names == [f.name for f in expected]
    assert [f.type for f in table.schema] == [f.type for f in expected]


def test_item_popularity_columns_and_types_are_exactly_the_contract() -> None:
    table = items([Ev(1, "view", D - timedelta(hours=3))])
    expected = ["item_id", "event_timestamp", "created", *ITEM_POPULARITY_FEATURES]
    assert table.schema.names == expected
    types = [pa.int64(), pa.timestamp("us", tz="UTC"), pa.timestamp("us", tz="UTC")]
    assert [f.type for f in table.schema] == types + [ARROW[k] for k in ITEM_POPULARITY_FEATURES.values()]


def test_no_events_give_an_empty_table_with_the_contract_schema() -> None:
    empty = EVENT_SCHEMA.empty_table()
    assert compute_user_activity(empty).num_rows == 0
    assert compute_user_activity(empty).schema.names[:3] == ["user_id", "event_timestamp", "created"]
    assert compute_item_popularity(empty).schema.names[-1] == "item_category_id"


def test_snapshot_rows_carry_midnight_utc_and_the_given_created_stamp() -> None:
    row = user_row(users([Ev(1, "view", D - timedelta(hours=3))]), 1)
    assert row["event_timestamp"] == D
    assert row["created"] == CREATED


def test_no_feature_is_ever_null() -> None:
    rows = [Ev(1, "view", D - timedelta(days=2), price=None, category=None), Ev(2, "purchase", D - timedelta(days=9))]
    for table in (users(rows, None), items(rows, None)):
        assert all(column.null_count == 0 for column in table.columns)


def same(a: pa.Table, b: pa.Table) -> bool:
    """Equal schemas and values, NaN equal to NaN (Arrow's `equals` says NaN != NaN)."""
    return a.schema == b.schema and a.to_pandas().equals(b.to_pandas())


def test_computation_is_deterministic() -> None:
    table = random_events(np.random.default_rng(3), n_users=40, n_items=15, days=20, n_sessions=300)
    assert same(compute_user_activity(table, None, CREATED), compute_user_activity(table, None, CREATED))
    assert same(compute_item_popularity(table, None, CREATED), compute_item_popularity(table, None, CREATED))


# ----------------------------------------------------------------------------------------------- windows and rows


def test_an_event_at_midnight_counts_for_the_next_snapshot_not_this_one() -> None:
    rows = [Ev(1, "view", D - timedelta(days=3)), Ev(1, "view", D - US), Ev(1, "view", D)]
    table = users(rows, [D.date(), (D + timedelta(days=1)).date()])
    today, tomorrow = user_row(table, 1), user_row(table, 1, D + timedelta(days=1))
    assert (today["views_1d"], today["views_7d"]) == (1, 2)
    assert (tomorrow["views_1d"], tomorrow["views_7d"]) == (1, 3)


def test_the_seven_day_window_starts_exactly_seven_days_before_the_snapshot() -> None:
    rows = [Ev(1, "add_to_cart", D - timedelta(days=7)), Ev(1, "add_to_cart", D - timedelta(days=7) - US)]
    row = user_row(users(rows), 1)
    assert (row["carts_1d"], row["carts_7d"], row["carts_30d"]) == (0, 1, 2)


def test_the_thirty_day_window_starts_exactly_thirty_days_before_the_snapshot() -> None:
    rows = [
        Ev(1, "remove_from_cart", D - timedelta(days=30)),
        Ev(1, "remove_from_cart", D - timedelta(days=30) - US),
        Ev(1, "view", D - timedelta(days=2)),
    ]
    assert user_row(users(rows), 1)["removes_30d"] == 1


def test_counts_are_kept_apart_by_event_type() -> None:
    kinds = ["view"] * 4 + ["add_to_cart"] * 3 + ["remove_from_cart"] * 2 + ["purchase"]
    row = user_row(users([Ev(1, kind, D - timedelta(hours=n + 1)) for n, kind in enumerate(kinds)]), 1)
    assert (row["views_1d"], row["carts_1d"], row["removes_1d"], row["purchases_1d"]) == (4, 3, 2, 1)


def test_a_user_has_rows_on_every_day_within_thirty_days_after_an_event_and_none_later() -> None:
    days = [(D + timedelta(days=n)).date() for n in range(-2, 40)]
    table = users([Ev(1, "view", D + timedelta(hours=5))], days)
    stamps = table["event_timestamp"].to_pylist()
    assert stamps == [D + timedelta(days=n) for n in range(1, 31)]
    assert table["views_30d"].to_pylist() == [1] * 30
    assert table["views_1d"].to_pylist() == [1] + [0] * 29


def test_default_snapshots_run_from_the_day_after_the_first_event_to_the_day_after_the_last() -> None:
    rows = [Ev(1, "view", D + timedelta(hours=1)), Ev(2, "view", D + timedelta(days=3, hours=1))]
    table = users(rows, None)
    assert sorted(set(table["event_timestamp"].to_pylist())) == [D + timedelta(days=n) for n in range(1, 5)]


def test_seconds_since_last_event_measures_from_the_snapshot() -> None:
    row = user_row(users([Ev(1, "view", D - timedelta(days=2, seconds=90))]), 1)
    assert row["seconds_since_last_event"] == 2 * 86_400 + 90


# ------------------------------------------------------------------------------------------ distinct and sessions


def test_distinct_items_and_categories_count_each_key_once_within_the_window() -> None:
    rows = [
        Ev(1, "view", D - timedelta(days=31), item=1, category=10),  # outside the window
        Ev(1, "view", D - timedelta(days=20), item=2, category=10),
        Ev(1, "view", D - timedelta(days=5), item=2, category=11),
        Ev(1, "view", D - timedelta(days=5), item=3, category=None),
        Ev(1, "view", D - timedelta(days=1), item=1, category=None),
    ]
    row = user_row(users(rows), 1)
    assert (row["distinct_items_30d"], row["distinct_categories_30d"]) == (3, 2)


def test_an_item_seen_again_after_a_long_gap_is_counted_in_each_window_it_appears() -> None:
    days = [(D + timedelta(days=n)).date() for n in (1, 35, 40, 80)]
    rows = [Ev(1, "view", D, item=7), Ev(1, "view", D + timedelta(days=39), item=7)]
    table = users(rows, days)
    assert table["distinct_items_30d"].to_pylist() == [1, 1]
    assert table["event_timestamp"].to_pylist() == [D + timedelta(days=1), D + timedelta(days=40)]


def test_conversion_rate_is_purchases_per_session() -> None:
    rows = [
        Ev(1, "view", D - timedelta(days=3), session="a"),
        Ev(1, "purchase", D - timedelta(days=3) + timedelta(minutes=5), session="a"),
        Ev(1, "view", D - timedelta(days=2), session="b"),
        Ev(1, "view", D - timedelta(days=1), session="c"),
    ]
    row = user_row(users(rows), 1)
    assert row["sessions_30d"] == 3
    assert row["conversion_rate_30d"] == pytest.approx(1 / 3)


def test_cart_abandonment_counts_sessions_with_a_cart_and_no_purchase() -> None:
    rows = [
        Ev(1, "add_to_cart", D - timedelta(days=3), session="bought"),
        Ev(1, "purchase", D - timedelta(days=3) + timedelta(minutes=1), session="bought"),
        Ev(1, "add_to_cart", D - timedelta(days=2), session="left"),
        Ev(1, "purchase", D - timedelta(days=1), session="no-cart"),
        Ev(1, "view", D - timedelta(hours=1), session="browse"),
    ]
    assert user_row(users(rows), 1)["cart_abandonment_rate_30d"] == pytest.approx(1 / 2)


def test_rates_are_zero_without_carts_or_sessions_to_divide_by() -> None:
    row = user_row(users([Ev(1, "view", D - timedelta(hours=2))]), 1)
    assert (row["conversion_rate_30d"], row["cart_abandonment_rate_30d"]) == (0.0, 0.0)


def test_a_purchase_after_midnight_does_not_rescue_a_cart_before_it() -> None:
    rows = [
        Ev(1, "add_to_cart", D - timedelta(minutes=10), session="s"),
        Ev(1, "purchase", D + timedelta(minutes=10), session="s"),
    ]
    table = users(rows, [D.date(), (D + timedelta(days=1)).date()])
    assert user_row(table, 1)["cart_abandonment_rate_30d"] == 1.0
    assert user_row(table, 1, D + timedelta(days=1))["cart_abandonment_rate_30d"] == 0.0


# ----------------------------------------------------------------------------------------------------- prices


def test_average_prices_ignore_unpriced_events() -> None:
    rows = [
        Ev(1, "view", D - timedelta(hours=3), price=10.0),
        Ev(1, "view", D - timedelta(hours=2), price=None),
        Ev(1, "view", D - timedelta(hours=1), price=30.0),
        Ev(1, "purchase", D - timedelta(hours=1), price=7.5),
    ]
    row = user_row(users(rows), 1)
    assert (row["avg_viewed_price_30d"], row["avg_purchased_price_30d"]) == (20.0, 7.5)


def test_average_prices_are_nan_when_nothing_priced_was_seen() -> None:
    row = user_row(users([Ev(1, "view", D - timedelta(hours=3), price=None)]), 1)
    assert math.isnan(row["avg_viewed_price_30d"])
    assert math.isnan(row["avg_purchased_price_30d"])


def test_days_since_last_purchase_is_nan_for_a_user_who_never_bought() -> None:
    assert math.isnan(user_row(users([Ev(1, "view", D - timedelta(hours=3))]), 1)["days_since_last_purchase"])


def test_days_since_last_purchase_looks_back_beyond_thirty_days() -> None:
    rows = [Ev(1, "purchase", D - timedelta(days=45, hours=12)), Ev(1, "view", D - timedelta(days=2))]
    row = user_row(users(rows), 1)
    assert row["days_since_last_purchase"] == 45.5
    assert row["purchases_30d"] == 0


# -------------------------------------------------------------------------------------------------------- RFM


def test_rfm_scores_are_quintiles_that_grow_with_the_measure() -> None:
    # user n: n events, the last one n hours before D, each purchase worth n
    rows = [
        Ev(n, "purchase", D - timedelta(hours=n, minutes=k), price=float(n)) for n in range(1, 11) for k in range(n)
    ]
    table = users(rows)
    by_user = {r["user_id"]: r for r in table.to_pylist()}
    frequency = [by_user[n]["rfm_frequency"] for n in range(1, 11)]
    assert frequency == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [by_user[n]["rfm_monetary"] for n in range(1, 11)] == frequency
    assert [by_user[n]["rfm_recency"] for n in range(1, 11)] == frequency[::-1]  # most recent = 5


def test_rfm_scores_stay_between_one_and_five_and_break_ties_by_user_id() -> None:
    table = compute_user_activity(random_events(np.random.default_rng(5), 120, 20, 15, 900), None, CREATED)
    frame = table.to_pandas()
    frame["events_30d"] = frame[["views_30d", "carts_30d", "removes_30d", "purchases_30d"]].sum(axis=1)
    for column in ("rfm_recency", "rfm_frequency", "rfm_monetary"):
        assert frame[column].between(1, 5).all()
    for _, day in frame.groupby("event_timestamp"):
        by_recency = day.sort_values(["seconds_since_last_event", "user_id"], ascending=[False, True])
        assert by_recency["rfm_recency"].is_monotonic_increasing
        assert day.sort_values(["events_30d", "user_id"])["rfm_frequency"].is_monotonic_increasing


# -------------------------------------------------------------------------------------------------- journey stage


STAGE_CASES = {
    "a first view is discovery": ([("view", "s", 1)], "discovery"),
    "a repeat view of an item is consideration": ([("view", "s", 1), ("view", "s", 1)], "consideration"),
    "a view of another item is discovery": ([("view", "s", 1), ("view", "s", 2)], "discovery"),
    "a cart is consideration": ([("view", "s", 1), ("add_to_cart", "s", 1)], "consideration"),
    "a removal is consideration": ([("remove_from_cart", "s", 1)], "consideration"),
    "a purchase is purchase": ([("view", "s", 1), ("purchase", "s", 1)], "purchase"),
    "anything after a purchase is post_purchase": ([("purchase", "s", 1), ("view", "s", 1)], "post_purchase"),
    "a new session starts over": ([("purchase", "s", 1), ("view", "t", 1)], "discovery"),
    "a repeat view in another session is discovery": ([("view", "s", 1), ("view", "t", 1)], "discovery"),
}


@pytest.mark.parametrize("case", STAGE_CASES, ids=list(STAGE_CASES))
def test_journey_stage_of_the_last_event_follows_the_rules(case: str) -> None:
    steps, stage = STAGE_CASES[case]
    start = D - timedelta(hours=2)
    rows = [Ev(1, kind, start + timedelta(minutes=n), item=item, session=s) for n, (kind, s, item) in enumerate(steps)]
    assert user_row(users(rows), 1)["journey_stage"] == STAGES.index(stage)


def test_journey_stage_ignores_events_at_or_after_the_snapshot() -> None:
    rows = [Ev(1, "view", D - timedelta(minutes=1)), Ev(1, "purchase", D)]
    assert user_row(users(rows), 1)["journey_stage"] == STAGES.index("discovery")


def test_journey_stage_of_a_quiet_user_is_that_of_their_last_event() -> None:
    rows = [Ev(1, "add_to_cart", D - timedelta(days=12))]
    assert user_row(users(rows), 1)["journey_stage"] == STAGES.index("consideration")


# --------------------------------------------------------------------------------------------------------- items


def test_item_counts_and_rates_cover_seven_days() -> None:
    rows = [Ev(u, "view", D - timedelta(days=2, minutes=u)) for u in range(4)]
    rows += [Ev(u, "add_to_cart", D - timedelta(days=1, minutes=u)) for u in range(2)]
    rows += [Ev(9, "purchase", D - timedelta(hours=1)), Ev(9, "purchase", D - timedelta(days=8))]
    row = item_row(items(rows), 100)
    assert (row["item_views_7d"], row["item_carts_7d"], row["item_purchases_7d"]) == (4, 2, 1)
    assert (row["view_to_cart_rate_7d"], row["cart_to_purchase_rate_7d"]) == (0.5, 0.5)


def test_item_rates_are_zero_without_views_or_carts() -> None:
    row = item_row(items([Ev(1, "purchase", D - timedelta(hours=1))]), 100)
    assert (row["view_to_cart_rate_7d"], row["cart_to_purchase_rate_7d"]) == (0.0, 0.0)


def test_item_price_and_category_are_the_last_known_before_the_snapshot() -> None:
    rows = [
        Ev(1, "view", D - timedelta(days=20), price=5.0, category=3),
        Ev(1, "view", D - timedelta(days=3), price=8.0, category=None),
        Ev(1, "view", D - timedelta(days=2), price=None, category=None),
        Ev(1, "view", D, price=99.0, category=99),
    ]
    row = item_row(items(rows), 100)
    assert (row["item_price"], row["item_category_id"]) == (8.0, 3)


def test_item_price_is_nan_and_category_minus_one_when_never_seen() -> None:
    row = item_row(items([Ev(1, "view", D - timedelta(days=1), price=None, category=None)]), 100)
    assert math.isnan(row["item_price"])
    assert row["item_category_id"] == -1


def test_an_item_has_rows_for_seven_days_after_an_event() -> None:
    days = [(D + timedelta(days=n)).date() for n in range(0, 12)]
    table = items([Ev(1, "view", D + timedelta(hours=1))], days)
    assert table["event_timestamp"].to_pylist() == [D + timedelta(days=n) for n in range(1, 8)]


# -------------------------------------------------------------------------------------------------- build_features


def test_build_features_replaces_both_offline_tables(settings: Settings) -> None:
    table = random_events(np.random.default_rng(1), n_users=20, n_items=10, days=5, n_sessions=60)
    DatasetStore(settings.events_dir).write("shop", table, source={"kind": "test"})
    messages: list[str] = []
    locations = build_features("shop", settings, progress=messages.append)
    offline = OfflineTables(settings)
    assert locations == {v: str(settings.offline_dir / f"{v}.parquet") for v in ("user_activity", "item_popularity")}
    stored = offline.read("user_activity")
    stored_events = DatasetStore(settings.events_dir).events("shop")
    assert same(stored, compute_user_activity(stored_events, None, stored["created"][0].as_py()))
    assert offline.read("item_popularity").num_rows > 0
    assert any("user_activity" in m for m in messages)


# ------------------------------------------------------------------------------------------------ no leakage


def random_events(rng: np.random.Generator, n_users: int, n_items: int, days: int, n_sessions: int) -> pa.Table:
    """Sessions of a few events minutes apart at random times, some crossing midnight, a few reusing an old id."""
    start = D - timedelta(days=days)
    lengths = rng.integers(1, 8, n_sessions)
    rows: list[Ev] = []
    for s, length in enumerate(lengths):
        user = int(rng.integers(0, n_users))
        at = start + timedelta(microseconds=int(rng.integers(0, days * 86_400_000_000)))
        session = f"s{s}" if rng.random() > 0.05 else f"old-{user}"  # reused ids make sessions span weeks
        for _ in range(length):
            at += timedelta(microseconds=int(rng.integers(1_000_000, 900_000_000)))
            kind = str(rng.choice(["view", "add_to_cart", "remove_from_cart", "purchase"], p=[0.6, 0.2, 0.05, 0.15]))
            item = int(rng.integers(0, n_items))
            price = None if rng.random() < 0.1 else float(np.round(rng.uniform(1, 100), 2))
            category = None if rng.random() < 0.1 else item % 7
            rows.append(Ev(user, kind, at, item=item, session=session, price=price, category=category))
    return events(rows)


def reference_user(ev: pd.DataFrame, snapshot: pd.Timestamp) -> dict[str, Any] | None:
    """user_activity recomputed the slow way, from one user's events strictly before the snapshot."""
    before = ev[ev.event_timestamp < snapshot].sort_values(["event_timestamp", "event_id"])
    window = before[before.event_timestamp >= snapshot - pd.Timedelta(days=30)]
    if window.empty:
        return None
    last_7d = before[before.event_timestamp >= snapshot - pd.Timedelta(days=7)]
    sessions = window.groupby("session_id").event_type.agg(set)
    carted = sessions[sessions.map(lambda kinds: "add_to_cart" in kinds)]
    abandoned = carted[carted.map(lambda kinds: "purchase" not in kinds)]
    viewed = window[(window.event_type == "view") & window.price.notna()]
    purchases = before[before.event_type == "purchase"]
    last = before.iloc[-1]
    earlier = before[(before.session_id == last.session_id)].iloc[:-1]
    if last.event_type == "purchase":
        stage = "purchase"
    elif (earlier.event_type == "purchase").any():
        stage = "post_purchase"
    elif (
        last.event_type in ("add_to_cart", "remove_from_cart")
        or ((earlier.event_type == "view") & (earlier.item_id == last.item_id)).any()
    ):
        stage = "consideration"
    else:
        stage = "discovery"
    return {
        "views_7d": int((last_7d.event_type == "view").sum()),
        "purchases_30d": int((window.event_type == "purchase").sum()),
        "distinct_items_30d": window.item_id.nunique(),
        "distinct_categories_30d": window.category_id.dropna().nunique(),
        "sessions_30d": len(sessions),
        "cart_abandonment_rate_30d": len(abandoned) / len(carted) if len(carted) else 0.0,
        "avg_viewed_price_30d": viewed.price.mean() if len(viewed) else math.nan,
        "days_since_last_purchase": (snapshot - purchases.event_timestamp.max()) / pd.Timedelta(days=1)
        if len(purchases)
        else math.nan,
        "seconds_since_last_event": (snapshot - last.event_timestamp) / pd.Timedelta(seconds=1),
        "journey_stage": STAGES.index(stage),
    }


def reference_item(ev: pd.DataFrame, snapshot: pd.Timestamp) -> dict[str, Any] | None:
    """item_popularity recomputed the slow way, from one item's events strictly before the snapshot."""
    before = ev[ev.event_timestamp < snapshot].sort_values(["event_timestamp", "event_id"])
    window = before[before.event_timestamp >= snapshot - pd.Timedelta(days=7)]
    if window.empty:
        return None
    prices, categories = before.price.dropna(), before.category_id.dropna()
    return {
        "item_views_7d": int((window.event_type == "view").sum()),
        "item_purchases_7d": int((window.event_type == "purchase").sum()),
        "item_price": prices.iloc[-1] if len(prices) else math.nan,
        "item_category_id": int(categories.iloc[-1]) if len(categories) else -1,
    }


def assert_same(actual: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    for name, value in expected.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(actual[name]), f"{where}: {name} = {actual[name]}, expected NaN"
        else:
            assert actual[name] == pytest.approx(value, rel=1e-9, abs=1e-6), f"{where}: {name}"


def test_sampled_rows_match_a_recomputation_from_events_strictly_before_the_snapshot() -> None:
    rng = np.random.default_rng(20260310)
    table = random_events(rng, n_users=60, n_items=25, days=50, n_sessions=1500)
    ev = table.to_pandas()
    by_user, by_item = dict(tuple(ev.groupby("user_id"))), dict(tuple(ev.groupby("item_id")))
    user_table = compute_user_activity(table, None, CREATED).to_pandas().set_index(["user_id", "event_timestamp"])
    item_table = compute_item_popularity(table, None, CREATED).to_pandas().set_index(["item_id", "event_timestamp"])
    snapshots = pd.date_range((D - timedelta(days=49)).date(), D.date(), freq="D", tz="UTC")

    checked = 0
    for user, snapshot in zip(rng.integers(0, 60, 150), snapshots[rng.integers(0, len(snapshots), 150)], strict=True):
        expected = reference_user(by_user[user], snapshot) if user in by_user else None
        key = (int(user), snapshot)
        assert (key in user_table.index) == (expected is not None), f"row presence of user {user} at {snapshot}"
        if expected is not None:
            assert_same(user_table.loc[key].to_dict(), expected, f"user {user} at {snapshot}")
            checked += 1
    for item, snapshot in zip(rng.integers(0, 25, 80), snapshots[rng.integers(0, len(snapshots), 80)], strict=True):
        expected = reference_item(by_item[item], snapshot) if item in by_item else None
        key = (int(item), snapshot)
        assert (key in item_table.index) == (expected is not None), f"row presence of item {item} at {snapshot}"
        if expected is not None:
            assert_same(item_table.loc[key].to_dict(), expected, f"item {item} at {snapshot}")
    assert checked > 50  # the sample really exercised rows, not just absences
