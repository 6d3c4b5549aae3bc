"""Stage rules: hand-made sessions, the generator's ground truth, and the online (last events window) variant."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from journey.contracts import STAGES
from journey.datasets.synthetic import SyntheticConfig, SyntheticDataset, generate
from journey.events import EVENT_SCHEMA
from journey.stages import (
    CONSIDERATION,
    DISCOVERY,
    POST_PURCHASE,
    PURCHASE,
    STAGE_STATES,
    assign_stages,
    event_type_codes,
    first_occurrence,
    session_order,
    stage_of_last_event,
)

T0 = datetime(2026, 9, 1, 12, tzinfo=UTC)


def events_table(rows: list[tuple[str, int, str, int]], *, seconds: list[int] | None = None) -> pa.Table:
    """(session, item, type, user) rows one second apart unless `seconds` says otherwise."""
    at = seconds if seconds is not None else list(range(len(rows)))
    return pa.table(
        {
            "event_id": [f"e{i:03d}" for i in range(len(rows))],
            "user_id": [u for _, _, _, u in rows],
            "session_id": [s for s, _, _, _ in rows],
            "item_id": [i for _, i, _, _ in rows],
            "event_type": [t for _, _, t, _ in rows],
            "event_timestamp": [T0 + timedelta(seconds=s) for s in at],
            "price": [1.0] * len(rows),
            "category_id": [7] * len(rows),
        },
        schema=EVENT_SCHEMA,
    )


def stages_of(table: pa.Table) -> list[str]:
    """Stage names in the table's own row order."""
    ordered = session_order(table)
    codes = assign_stages(ordered.session, ordered.item, ordered.event_type)
    out = np.empty(table.num_rows, dtype=object)
    out[ordered.row] = np.array(STAGE_STATES)[codes]
    return list(out)


def test_each_rule_on_a_hand_made_session() -> None:
    session = [
        ("s", 1, "view", 1),  # new item
        ("s", 2, "view", 1),  # new item
        ("s", 1, "view", 1),  # repeat view
        ("s", 3, "add_to_cart", 1),  # cart of a new item is still consideration
        ("s", 3, "view", 1),  # item carted before (never viewed): seen, so consideration
        ("s", 3, "remove_from_cart", 1),
        ("s", 2, "purchase", 1),
        ("s", 9, "view", 1),  # anything after a purchase
        ("s", 2, "add_to_cart", 1),
        ("s", 9, "purchase", 1),  # a second purchase is a purchase
    ]
    assert stages_of(events_table(session)) == [
        "discovery",
        "discovery",
        "consideration",
        "consideration",
        "consideration",
        "consideration",
        "purchase",
        "post_purchase",
        "post_purchase",
        "purchase",
    ]


def test_sessions_are_judged_apart_and_input_order_does_not_matter() -> None:
    rows = [("a", 1, "view", 1), ("b", 1, "view", 2), ("a", 1, "view", 1), ("b", 2, "purchase", 2), ("b", 1, "view", 2)]
    table = events_table(rows)
    expected = stages_of(table)
    assert expected == ["discovery", "discovery", "consideration", "purchase", "post_purchase"]
    shuffled = np.random.default_rng(0).permutation(table.num_rows)
    assert stages_of(table.take(pa.array(shuffled))) == [expected[i] for i in shuffled]


def test_events_tied_in_time_are_ordered_by_event_id() -> None:
    # same second: e000 (purchase) sorts before e001 (view), whatever the row order
    table = events_table([("s", 5, "purchase", 1), ("s", 5, "view", 1)], seconds=[0, 0])
    assert stages_of(table.take(pa.array([1, 0]))) == ["post_purchase", "purchase"]


def test_first_occurrence_handles_item_ids_too_sparse_to_pack() -> None:
    session = np.array([0, 0, 0, 1, 1], dtype=np.int64)
    item = np.array([2**62, 5, 2**62, 5, 5], dtype=np.int64)
    assert first_occurrence(session, item).tolist() == [True, True, False, True, False]


def test_session_order_keeps_sessions_contiguous_and_maps_back() -> None:
    table = events_table([("b", 1, "view", 2), ("a", 1, "view", 1), ("b", 2, "view", 2)])
    ordered = session_order(table)
    assert ordered.session.tolist() == sorted(ordered.session.tolist())
    assert sorted(ordered.lengths.tolist()) == [1, 2] and ordered.n_sessions == 2
    ids = ordered.session_ids.take(pa.array(ordered.session)).to_pylist()
    assert ids == [table["session_id"][int(r)].as_py() for r in ordered.row]


def test_unknown_event_type_is_named() -> None:
    with pytest.raises(ValueError, match="'click'"):
        event_type_codes(["view", "click"])


@pytest.fixture(scope="module")
def synthetic() -> SyntheticDataset:
    return generate(SyntheticConfig(n_users=3_000, n_items=3_000, seed=5))


def test_rules_recover_the_generators_stages_exactly_for_human_sessions(synthetic: SyntheticDataset) -> None:
    ordered = session_order(synthetic.events)
    codes = assign_stages(ordered.session, ordered.item, ordered.event_type)
    truth = pc.cast(synthetic.event_stage, pa.string()).to_numpy(zero_copy_only=False)[ordered.row]
    bots = pc.filter(synthetic.users["user_id"], synthetic.users["is_bot"]).to_numpy()
    human = ~np.isin(ordered.user, bots)
    assert human.sum() > 40_000
    mismatches = np.flatnonzero(np.array(STAGE_STATES)[codes][human] != truth[human])
    assert mismatches.size == 0, mismatches[:10]


def test_stage_of_last_event_reads_the_session_window() -> None:
    assert stage_of_last_event([], []) is None
    assert stage_of_last_event(["view"], [1]) == DISCOVERY
    assert stage_of_last_event(["view", "view"], [1, 1]) == CONSIDERATION
    assert stage_of_last_event(["view", "purchase"], [1, 1]) == PURCHASE
    assert stage_of_last_event(["purchase", "view"], [1, 2]) == POST_PURCHASE


def test_a_purchase_that_fell_out_of_the_window_still_makes_post_purchase() -> None:
    # the window holds two views only, but the session (session_purchases) bought earlier
    assert stage_of_last_event(["view", "view"], [1, 2], session_purchases=1) == POST_PURCHASE
    assert stage_of_last_event(["view", "purchase"], [1, 2], session_purchases=2) == PURCHASE
    assert stage_of_last_event(["purchase", "view"], [1, 2], session_purchases=1) == POST_PURCHASE


def test_misaligned_window_lists_are_refused() -> None:
    with pytest.raises(ValueError, match="aligned"):
        stage_of_last_event(["view", "view"], [1])


def test_stage_ordinals_are_the_contract_ones() -> None:
    assert STAGE_STATES[: len(STAGES)] == STAGES
    assert tuple(range(4)) == (DISCOVERY, CONSIDERATION, PURCHASE, POST_PURCHASE)


def test_stages_import_neither_feast_nor_torch_nor_upper_layers() -> None:
    code = (
        "import sys, journey.stages, journey.chain, journey.chain_artifact\n"
        "bad = [m for m in ('feast', 'torch', 'training', 'serving') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
