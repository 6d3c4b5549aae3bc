"""The synthetic generator: reproducible, canonical, and faithful to the ground truth it reports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from journey.datasets.synthetic import (
    STAGES,
    SyntheticConfig,
    SyntheticDataset,
    generate,
    transition_counts,
)
from journey.events import EVENT_SCHEMA, validate_events
from journey.sessions import sessionise

TIMEOUT_US = 1800 * 10**6
ENOUGH = 20_000  # transitions out of a stage needed before its row is compared (sd <= 0.0035 per entry)


@pytest.fixture(scope="module")
def default() -> SyntheticDataset:
    return generate(SyntheticConfig())


@pytest.fixture(scope="module")
def large() -> SyntheticDataset:
    """At least 200k human sessions (no bots: they do not walk the chain)."""
    return generate(SyntheticConfig(n_users=61_500, bot_share=0.0))


def small(**changes: Any) -> SyntheticConfig:
    return SyntheticConfig(n_users=1_500, n_items=2_000, **changes)


def human_frame(data: SyntheticDataset) -> pd.DataFrame:
    """Human events with their stage, in session order (a session's events keep their time order)."""
    frame = data.events.append_column("stage", data.event_stage.cast(pa.string())).to_pandas()
    bots = set(data.sessions.filter(data.sessions["is_bot"])["session_id"].to_pylist())
    ordered: pd.DataFrame = frame[~frame["session_id"].isin(bots)].sort_values(
        ["session_id", "event_timestamp"], kind="stable"
    )
    return ordered


def test_same_seed_gives_identical_tables() -> None:
    a, b = generate(small(seed=3)), generate(small(seed=3))
    for name in ("events", "sessions", "users", "items"):
        assert getattr(a, name).equals(getattr(b, name)), name
    assert a.event_stage.equals(b.event_stage)


def test_different_seed_gives_different_events() -> None:
    a, b = generate(small(seed=3)), generate(small(seed=4))
    assert not a.events.equals(b.events)


def test_events_match_the_canonical_schema_exactly(default: SyntheticDataset) -> None:
    assert default.events.schema.equals(EVENT_SCHEMA, check_metadata=True)
    assert len(default.event_stage) == default.events.num_rows


def test_event_ids_are_unique(default: SyntheticDataset) -> None:
    assert pc.count_distinct(default.events["event_id"]).as_py() == default.events.num_rows


def test_events_pass_validation_without_rejects(default: SyntheticDataset) -> None:
    result = validate_events(default.events, now=datetime(2027, 1, 1, tzinfo=UTC))
    assert result.rejects.num_rows == 0
    assert result.valid.num_rows == default.events.num_rows


def test_events_are_sorted_by_time(default: SyntheticDataset) -> None:
    ts = default.events["event_timestamp"].cast(pa.int64()).to_numpy()
    assert (np.diff(ts) >= 0).all()


def test_default_size_is_a_few_hundred_thousand_events(default: SyntheticDataset) -> None:
    assert 300_000 <= default.events.num_rows <= 500_000


def test_scaled_to_hits_the_requested_event_count() -> None:
    data = generate(small().scaled_to(60_000))
    assert data.events.num_rows == pytest.approx(60_000, rel=0.1)


def test_sessionise_recovers_exactly_the_generated_sessions(default: SyntheticDataset) -> None:
    ev = default.events
    found = sessionise(ev["user_id"].to_numpy(), ev["event_timestamp"].cast(pa.int64()).to_numpy(), TIMEOUT_US)
    assert found.count == default.sessions.num_rows
    assert found.session_ids().cast(pa.string()).equals(ev["session_id"].combine_chunks())


def test_sessions_truth_agrees_with_the_events(default: SyntheticDataset) -> None:
    sessions, ev = default.sessions, default.events
    assert pc.sum(sessions["n_events"]).as_py() == ev.num_rows
    buyers = set(ev.filter(pc.equal(ev["event_type"], "purchase"))["session_id"].to_pylist())
    assert set(sessions.filter(sessions["purchased"])["session_id"].to_pylist()) == buyers
    assert pc.all(pc.equal(pc.list_value_length(sessions["stages"]), sessions["n_events"])).as_py()


@pytest.mark.parametrize("segment", ["browser", "deal_seeker", "loyal_buyer"])
def test_empirical_transitions_match_each_segments_matrix(large: SyntheticDataset, segment: str) -> None:
    assert (~large.sessions["is_bot"].to_numpy()).sum() >= 200_000
    counts = transition_counts(large, segment)
    rows = counts.sum(axis=1)
    checked = rows >= ENOUGH
    assert checked.sum() >= 2, f"too little data for {segment}: {rows}"
    empirical = counts[checked] / rows[checked, None]
    expected = np.asarray(large.config.segments[segment].transitions)[checked]
    assert np.abs(empirical - expected).max() <= 0.01


@pytest.mark.parametrize("segment", ["browser", "deal_seeker", "loyal_buyer"])
def test_first_stages_match_each_segments_initial_distribution(large: SyntheticDataset, segment: str) -> None:
    sessions = large.sessions.filter(pc.equal(large.sessions["segment"], segment))
    first = pc.list_element(sessions["stages"], 0).cast(pa.string()).to_numpy(zero_copy_only=False)
    empirical = np.array([(first == s).mean() for s in STAGES])
    assert np.abs(empirical - np.asarray(large.config.segments[segment].initial)).max() <= 0.01


def test_transition_counts_cover_every_human_event_once(default: SyntheticDataset) -> None:
    human = default.sessions.filter(pc.invert(default.sessions["is_bot"]))
    assert transition_counts(default).sum() == pc.sum(human["n_events"]).as_py()


def test_transition_counts_reject_an_unknown_segment(default: SyntheticDataset) -> None:
    with pytest.raises(ValueError, match="nobody"):
        transition_counts(default, "nobody")


def test_discovery_views_only_items_new_to_the_session(default: SyntheticDataset) -> None:
    frame = human_frame(default)
    seen = frame[frame["stage"] != "post_purchase"]
    repeat = seen.duplicated(["session_id", "item_id"])
    assert (seen.loc[seen["stage"] == "discovery", "event_type"] == "view").all()
    assert not repeat[seen["stage"] == "discovery"].any()


def test_consideration_events_are_repeat_views_or_cart_changes(default: SyntheticDataset) -> None:
    frame = human_frame(default)
    seen = frame[frame["stage"] != "post_purchase"]
    repeat = seen.duplicated(["session_id", "item_id"])
    consider = seen["stage"] == "consideration"
    views = consider & (seen["event_type"] == "view")
    assert repeat[views].all()
    assert set(seen.loc[consider, "event_type"]) == {"view", "add_to_cart", "remove_from_cart"}


def test_removed_items_were_in_the_cart(default: SyntheticDataset) -> None:
    frame = human_frame(default)
    delta = frame["event_type"].map({"add_to_cart": 1, "remove_from_cart": -1}).fillna(0)
    in_cart = delta.groupby([frame["session_id"], frame["item_id"]]).cumsum()
    assert (in_cart[frame["event_type"] == "remove_from_cart"] >= 0).all()


def test_purchase_and_post_purchase_stages_emit_their_event_types(default: SyntheticDataset) -> None:
    frame = human_frame(default)
    assert (frame.loc[frame["stage"] == "purchase", "event_type"] == "purchase").all()
    assert (frame.loc[frame["stage"] == "post_purchase", "event_type"] == "view").all()


def with_previous(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` plus the previous event's type, item and stage in the same session (NaN for a session's first)."""
    same = frame["session_id"].eq(frame["session_id"].shift())
    out = frame.assign(
        prev_type=frame["event_type"].shift().where(same),
        prev_item=frame["item_id"].shift().where(same),
        prev_stage=frame["stage"].shift().where(same),
    )
    views = frame["item_id"].where(frame["event_type"] == "view")
    out["last_viewed"] = views.groupby(frame["session_id"], sort=False).shift().groupby(frame["session_id"]).ffill()
    return out


def test_an_add_right_after_a_view_adds_the_item_just_viewed(default: SyntheticDataset) -> None:
    frame = with_previous(human_frame(default))
    adds = frame[(frame["event_type"] == "add_to_cart") & (frame["prev_type"] == "view")]
    assert len(adds) > 5_000
    assert (adds["item_id"] == adds["prev_item"]).all()


def test_a_repeat_view_mostly_goes_back_to_the_item_viewed_last(default: SyntheticDataset) -> None:
    def share_back(data: SyntheticDataset) -> float:
        frame = with_previous(human_frame(data))
        repeats = frame[(frame["stage"] == "consideration") & (frame["event_type"] == "view")]
        repeats = repeats[repeats["last_viewed"].notna()]
        return float((repeats["item_id"] == repeats["last_viewed"]).mean())

    # the other repeat views pick any seen item, which is sometimes the last one too
    back, uniform = share_back(default), share_back(generate(small(p_repeat_last_item=0.0)))
    assert back >= default.config.p_repeat_last_item
    assert uniform < 0.55 and back > uniform + 0.3


def test_a_second_look_makes_a_cart_add_likelier(default: SyntheticDataset) -> None:
    frame = with_previous(human_frame(default))
    consider = frame[(frame["stage"] == "consideration") & frame["prev_type"].notna()]
    after_repeat = consider["prev_type"].eq("view") & consider["prev_stage"].eq("consideration")
    after_browse = consider["prev_stage"].eq("discovery")
    added = consider["event_type"] == "add_to_cart"
    cfg = default.config
    assert after_repeat.sum() > 5_000 and after_browse.sum() > 5_000
    assert added[after_repeat].mean() == pytest.approx(cfg.p_add_after_repeat_view, abs=0.02)
    assert added[after_browse].mean() == pytest.approx(cfg.p_add_to_cart, abs=0.02)


def test_default_shop_has_structure_beyond_the_last_event_type(default: SyntheticDataset) -> None:
    """What a next-action model can learn beyond P(next | last type): after a view, the likeliest next step depends
    on whether it was a first look (browse on), a repeat look (leave or cart) or a look after a purchase (leave)."""
    frame = human_frame(default)
    same = frame["session_id"].eq(frame["session_id"].shift(-1))
    frame = frame.assign(label=frame["event_type"].shift(-1).where(same, "exit"))
    views = frame[frame["event_type"] == "view"]
    table = pd.crosstab(views["stage"], views["label"]).idxmax(axis=1)
    likeliest = {str(stage): str(label) for stage, label in table.items()}
    assert likeliest == {"discovery": "view", "consideration": "exit", "post_purchase": "exit"}


def test_default_shop_converts_a_plausible_share_of_sessions(default: SyntheticDataset) -> None:
    human = default.sessions.filter(pc.invert(default.sessions["is_bot"]))
    conversion = pc.mean(human["purchased"].cast(pa.float64())).as_py()
    assert 0.03 <= conversion <= 0.11
    assert 3.5 <= pc.mean(human["n_events"]).as_py() <= 6


def test_event_price_and_category_are_the_items(default: SyntheticDataset) -> None:
    items = default.items.to_pandas().set_index("item_id")
    ev = default.events.to_pandas()
    assert (ev["price"].to_numpy() == items.loc[ev["item_id"], "price"].to_numpy()).all()
    assert (ev["category_id"].to_numpy() == items.loc[ev["item_id"], "category_id"].to_numpy()).all()


def test_bot_share_of_sessions_is_as_configured(default: SyntheticDataset) -> None:
    share = pc.mean(default.sessions["is_bot"].cast(pa.float64())).as_py()
    assert share == pytest.approx(default.config.bot_share, abs=0.001)


def test_bot_sessions_are_many_fast_views_flagged_as_bots(default: SyntheticDataset) -> None:
    bots = default.sessions.filter(default.sessions["is_bot"])
    assert set(bots["segment"].to_pylist()) == {"bot"}
    n = bots["n_events"].to_numpy()
    low, high = default.config.bot_views
    assert n.min() >= low and n.max() <= high
    frame = default.events.append_column("stage", default.event_stage.cast(pa.string())).to_pandas()
    frame = frame[frame["session_id"].isin(set(bots["session_id"].to_pylist()))]
    assert set(frame["event_type"]) == {"view"} and set(frame["stage"]) == {"discovery"}
    gaps = frame.groupby("session_id")["event_timestamp"].diff().dropna().dt.total_seconds()
    assert gaps.between(*default.config.bot_gap_s).all()
    users = default.users.filter(default.users["is_bot"])
    assert set(users["user_id"].to_pylist()) == set(bots["user_id"].to_pylist())


def test_bot_sessions_are_left_out_of_the_transition_truth(default: SyntheticDataset) -> None:
    human = default.sessions.filter(pc.invert(default.sessions["is_bot"]))
    assert transition_counts(default).sum() < default.events.num_rows
    assert transition_counts(default)[:, -1].sum() == human.num_rows


def test_top_one_percent_of_items_get_a_large_share_of_discovery_views(default: SyntheticDataset) -> None:
    frame = human_frame(default)
    items = frame.loc[frame["stage"] == "discovery", "item_id"].to_numpy()
    rank = default.items["popularity_rank"].to_numpy()
    top = rank[items - 1] <= default.config.n_items // 100
    assert top.mean() > 0.3


def test_evening_hours_are_busier_than_night_hours(default: SyntheticDataset) -> None:
    human = default.sessions.filter(pc.invert(default.sessions["is_bot"]))
    hours = np.bincount(pc.hour(human["start"]).to_numpy(), minlength=24)
    assert hours[18:22].mean() > 3 * hours[2:6].mean()


def test_inter_event_gaps_stay_below_the_session_timeout(default: SyntheticDataset) -> None:
    frame = human_frame(default)
    gaps = frame.groupby("session_id")["event_timestamp"].diff().dropna().dt.total_seconds()
    assert gaps.max() <= default.config.gap_max_s < 1800
