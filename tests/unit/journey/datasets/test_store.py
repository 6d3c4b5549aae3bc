from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from journey.datasets.store import DatasetStore, WriteMode
from journey.errors import ConflictError, InvalidInputError, NotFoundError
from journey.events import EVENT_SCHEMA, REJECTS_SCHEMA


def events(ids: list[str], day: int = 1) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "event_id": ids,
            "user_id": [1] * n,
            "session_id": ["1-0"] * n,
            "item_id": list(range(n)),
            "event_type": ["view"] * n,
            "event_timestamp": [datetime(2026, 3, day, 10, i, tzinfo=UTC) for i in range(n)],
            "price": [1.0] * n,
            "category_id": [None] * n,
        },
        schema=EVENT_SCHEMA,
    )


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    return DatasetStore(tmp_path / "datasets")


def test_events_are_partitioned_by_utc_day_and_read_back_canonical(store: DatasetStore) -> None:
    table = pa.concat_tables([events(["a", "b"], day=1), events(["c"], day=2)])
    manifest = store.write("d", table, source={"kind": "test"})
    assert sorted(p.name for p in (store.path("d") / "events").iterdir()) == [
        "date=2026-03-01",
        "date=2026-03-02",
    ]
    back = store.events("d")
    assert back.schema == EVENT_SCHEMA
    assert sorted(back["event_id"].to_pylist()) == ["a", "b", "c"]
    assert manifest.data["events_by_type"] == {"view": 3}
    assert manifest.data["time_range"]["start"].startswith("2026-03-01T10:00")
    assert manifest.data["files"] == 2


def test_an_existing_dataset_is_never_overwritten_by_default(store: DatasetStore) -> None:
    store.write("d", events(["a"]), source={})
    with pytest.raises(ConflictError, match="--replace"):
        store.write("d", events(["b"]), source={})
    assert store.events("d")["event_id"].to_pylist() == ["a"]


def test_replace_swaps_the_whole_dataset(store: DatasetStore) -> None:
    store.write("d", events(["a"]), source={})
    store.write("d", events(["b", "c"]), source={}, mode=WriteMode.REPLACE)
    assert sorted(store.events("d")["event_id"].to_pylist()) == ["b", "c"]
    assert not [p for p in store.root.iterdir() if p.name.startswith(".")]


def test_append_keeps_stored_events_and_counts_their_ids_as_duplicates_not_rejects(store: DatasetStore) -> None:
    store.write("d", events(["a", "b"]), source={})
    manifest = store.write("d", events(["b", "c"], day=2), source={}, mode=WriteMode.APPEND)
    assert sorted(store.events("d")["event_id"].to_pylist()) == ["a", "b", "c"]
    assert manifest.data["rejects_by_reason"] == {} and manifest.data["duplicate_rows"] == 1
    assert [s["rows_duplicate"] for s in manifest.data["sources"]] == [0, 1]


def test_appending_the_same_events_again_changes_no_stored_event(store: DatasetStore) -> None:
    store.write("d", events(["a", "b"]), source={})
    before = store.events("d")
    for _ in range(2):  # a retried import
        manifest = store.write("d", events(["a", "b"]), source={}, mode=WriteMode.APPEND)
    assert store.events("d").sort_by("event_id").equals(before.sort_by("event_id"))
    assert manifest.data["duplicate_rows"] == 4 and manifest.data["rejected_rows"] == 0


def test_a_failing_write_leaves_the_stored_dataset_intact(store: DatasetStore) -> None:
    store.write("d", events(["a"]), source={})
    broken = events(["b"]).drop_columns(["price"])
    with pytest.raises(InvalidInputError):
        store.write("d", broken, source={}, mode=WriteMode.REPLACE)
    assert store.events("d")["event_id"].to_pylist() == ["a"]
    assert store.rejects("d").schema == REJECTS_SCHEMA


def test_unknown_dataset_lists_the_known_ones(store: DatasetStore) -> None:
    store.write("known", events(["a"]), source={})
    with pytest.raises(NotFoundError, match="known"):
        store.manifest("missing")


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "x" * 65])
def test_dataset_names_cannot_escape_the_store(store: DatasetStore, name: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid dataset name"):
        store.path(name)
