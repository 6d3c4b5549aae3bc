"""The on-demand views' Python functions on hand-made inputs (the same code Feast runs online and offline)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3] / "feature_repo"


@pytest.fixture(scope="module")
def on_demand() -> Iterator[ModuleType]:
    """feature_repo's modules are top-level by design (Feast imports them by name from the repo folder)."""
    sys.path.insert(0, str(REPO))
    try:
        import on_demand

        yield on_demand
    finally:
        sys.path.remove(str(REPO))


def _session_item(
    module: ModuleType, candidate: int, items: list[int] | None, types: list[str] | None
) -> dict[str, Any]:
    udf = module.session_item_context.feature_transformation.udf
    out = udf({"candidate_item_id": [candidate], "session_last_item_ids": [items], "session_last_event_types": [types]})
    return {name: values[0] for name, values in out.items()}


def test_candidate_viewed_twice_and_carted_is_in_the_cart(on_demand: ModuleType) -> None:
    got = _session_item(on_demand, 7, [7, 8, 7, 7], ["view", "view", "view", "add_to_cart"])
    assert got == {
        "candidate_session_views": 2,
        "candidate_in_cart": 1,
        "candidate_is_last_carted": 1,
        "candidate_events_since_first_seen": 3,
    }


def test_a_removed_candidate_is_no_longer_in_the_cart(on_demand: ModuleType) -> None:
    got = _session_item(on_demand, 7, [7, 7, 9], ["add_to_cart", "remove_from_cart", "add_to_cart"])
    assert got["candidate_in_cart"] == 0
    assert got["candidate_is_last_carted"] == 0


def test_an_unknown_session_gives_the_not_seen_values(on_demand: ModuleType) -> None:
    got = _session_item(on_demand, 7, None, None)
    assert got == {
        "candidate_session_views": 0,
        "candidate_in_cart": 0,
        "candidate_is_last_carted": 0,
        "candidate_events_since_first_seen": -1,
    }
