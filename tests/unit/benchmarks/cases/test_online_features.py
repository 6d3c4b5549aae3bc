"""What the online-feature reads ask for: a fresh entity per single read and a fresh batch per 100-item read."""

from __future__ import annotations

from benchmarks.cases.online_features import _requests


def test_each_read_asks_for_entities_drawn_for_it() -> None:
    asked = _requests(users=1_000, items=1_000, calls=50, batches=12)

    assert len(asked.picks) == len(asked.rows) == 51  # + the warm-up read
    assert len(set(asked.picks)) > 45  # drawn with replacement: a repeat only by chance
    assert len(asked.batches) == 12 and all(len(batch) == 100 for batch in asked.batches)
    items = [tuple(row["item_id"] for row in batch) for batch in asked.batches]
    assert len(set(items)) == 12  # no 100-item read repeats another's batch
    assert all(len({row["user_id"] for row in batch}) == 1 for batch in asked.batches)  # one user + session each
