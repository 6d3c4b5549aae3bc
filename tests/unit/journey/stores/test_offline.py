"""Offline tables of the local profile: one Parquet file per view, replaced atomically."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from journey.errors import InvalidInputError, NotFoundError
from journey.settings import Settings
from journey.stores.offline import OfflineTables, default_index_columns

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def rows(users: list[int], value: float = 1.0) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array(users, pa.int64()),
            "event_timestamp": pa.array([T0] * len(users), pa.timestamp("us", tz="UTC")),
            "created": pa.array([T0] * len(users), pa.timestamp("us", tz="UTC")),
            "score": pa.array([value] * len(users), pa.float64()),
            "last_items": pa.array([[u, u + 1] for u in users], pa.list_(pa.int64())),
        }
    )


@pytest.fixture
def tables(settings: Settings) -> OfflineTables:
    return OfflineTables(settings)


def test_a_view_is_one_parquet_file_under_the_offline_dir(tables: OfflineTables, settings: Settings) -> None:
    where = tables.write("user_activity", rows([1, 2]), "replace")
    assert where == str(settings.offline_dir / "user_activity.parquet") == tables.location("user_activity")
    assert pq.read_table(where).equals(rows([1, 2]))


def test_read_returns_what_was_written(tables: OfflineTables) -> None:
    tables.write("user_activity", rows([1, 2]), "replace")
    assert tables.read("user_activity").equals(rows([1, 2]))


def test_exists_tells_whether_a_view_was_written(tables: OfflineTables) -> None:
    assert not tables.exists("user_activity")
    tables.write("user_activity", rows([1]), "replace")
    assert tables.exists("user_activity")


def test_replace_swaps_the_whole_table(tables: OfflineTables) -> None:
    tables.write("user_activity", rows([1, 2, 3]), "replace")
    tables.write("user_activity", rows([9], value=2.0), "replace")
    assert tables.read("user_activity").equals(rows([9], value=2.0))


def test_append_adds_rows_after_the_stored_ones(tables: OfflineTables) -> None:
    tables.write("user_activity", rows([1]), "replace")
    tables.write("user_activity", rows([2, 3]), "append")
    assert tables.read("user_activity")["user_id"].to_pylist() == [1, 2, 3]


def test_append_to_a_missing_view_creates_it(tables: OfflineTables) -> None:
    tables.write("session_activity", rows([5]), "append")
    assert tables.read("session_activity").equals(rows([5]))


def test_append_accepts_the_same_columns_in_another_order(tables: OfflineTables) -> None:
    tables.write("user_activity", rows([1]), "replace")
    shuffled = rows([2]).select(["score", "user_id", "last_items", "created", "event_timestamp"])
    tables.write("user_activity", shuffled, "append")
    assert tables.read("user_activity").equals(rows([1, 2]))


def test_append_with_different_columns_names_them_and_keeps_the_table(tables: OfflineTables) -> None:
    tables.write("user_activity", rows([1]), "replace")
    with pytest.raises(InvalidInputError, match="differ"):
        tables.write("user_activity", rows([2]).drop_columns(["score"]), "append")
    assert tables.read("user_activity").equals(rows([1]))


def test_a_failing_replace_leaves_the_old_file_intact_and_no_temp_file(
    tables: OfflineTables, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables.write("user_activity", rows([1, 2]), "replace")

    def crash_half_way(table: pa.Table, where: Any, **kwargs: Any) -> None:
        where.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash_half_way)
    with pytest.raises(OSError, match="disk full"):
        tables.write("user_activity", rows([7, 8, 9]), "replace")
    monkeypatch.undo()
    assert tables.read("user_activity").equals(rows([1, 2]))
    assert sorted(p.name for p in Path(settings.offline_dir).iterdir() if not p.name.endswith(".lock")) == [
        "user_activity.parquet"
    ]


def test_a_failing_append_leaves_the_old_file_intact(tables: OfflineTables, monkeypatch: pytest.MonkeyPatch) -> None:
    tables.write("user_activity", rows([1]), "replace")

    def crash(table: pa.Table, where: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError):
        tables.write("user_activity", rows([2]), "append")
    monkeypatch.undo()
    assert tables.read("user_activity").equals(rows([1]))


def test_reading_a_view_never_written_names_where_it_looked(tables: OfflineTables, settings: Settings) -> None:
    with pytest.raises(NotFoundError, match=str(settings.offline_dir / "item_popularity.parquet")):
        tables.read("item_popularity")


@pytest.mark.parametrize("name", ["../etc", "User", "user-activity", "1view", "", "a" * 41, "x y"])
def test_view_names_that_are_not_plain_identifiers_are_refused(tables: OfflineTables, name: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid feature view name"):
        tables.write(name, rows([1]), "replace")


def test_an_unknown_write_mode_is_refused(tables: OfflineTables) -> None:
    with pytest.raises(InvalidInputError, match="write mode"):
        tables.write("user_activity", rows([1]), "upsert")  # type: ignore[arg-type]


def test_index_columns_must_be_columns_of_the_table(tables: OfflineTables) -> None:
    with pytest.raises(InvalidInputError, match="index columns"):
        tables.write("user_activity", rows([1]), "replace", index_columns=["item_id"])


def test_the_default_index_is_the_entity_key_and_event_timestamp() -> None:
    assert default_index_columns(rows([1])) == ["user_id", "event_timestamp"]
    assert default_index_columns(pa.table({"item_id": [1], "x": [2]})) == ["item_id"]


def test_drop_all_removes_every_view(tables: OfflineTables) -> None:
    tables.write("user_activity", rows([1]), "replace")
    tables.write("item_popularity", rows([1]), "replace")
    tables.drop_all()
    assert not tables.exists("user_activity")
    assert not tables.exists("item_popularity")
