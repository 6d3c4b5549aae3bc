"""Offline tables of the prod profile against a real PostgreSQL: COPY round trips, atomic replace, append."""

from __future__ import annotations

import math
import socket
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from sqlalchemy.engine import make_url

from journey.errors import InvalidInputError, ServiceUnavailableError
from journey.settings import Settings
from journey.stores.offline import OfflineTables

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def rows(users: list[int], value: float = 1.0) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array(users, pa.int64()),
            "event_timestamp": pa.array([T0 + timedelta(microseconds=u) for u in users], pa.timestamp("us", tz="UTC")),
            "score": pa.array([value] * len(users), pa.float64()),
        }
    )


def connect(settings: Settings) -> psycopg.Connection[Any]:
    url = make_url(settings.postgres_dsn)
    return psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database, autocommit=True)


def tables_in_schema(settings: Settings) -> list[str]:
    with connect(settings) as conn:
        found = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (settings.offline_schema,)
        ).fetchall()
    return [str(name) for (name,) in found]


def same(a: pa.Table, b: pa.Table) -> bool:
    """Equal schemas and values, NaN equal to NaN."""
    return a.schema == b.schema and a.to_pandas().equals(b.to_pandas())


def test_every_supported_type_survives_a_round_trip(postgres_settings: Settings) -> None:
    tricky = ["a,b", 'say "hi"', "back\\slash", "new\nline", "", None, "NULL", "{x}", " pad ", "é ü 😀", "\\."]
    n = len(tricky)
    table = pa.table(
        {
            "session_id": pa.array(tricky, pa.string()),
            "event_timestamp": pa.array(
                [T0 + timedelta(days=i, microseconds=123_457 * i) for i in range(n - 1)] + [None],
                pa.timestamp("us", tz="UTC"),
            ),
            "created": pa.array(
                [datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)] * n, pa.timestamp("us", tz="UTC")
            ),
            "count": pa.array([0, 1, -1, 2**62, None, 5, 6, 7, 8, 9, 10], pa.int64()),
            "score": pa.array(
                [0.1 + 0.2, math.nan, math.inf, -math.inf, None, 5e-324, -0.0, 1e300, 1 / 3, 2.5, 100.0], pa.float64()
            ),
            "flag": pa.array([True, False, None] + [True] * (n - 3), pa.bool_()),
            "item_ids": pa.array(
                [[1, 2], [], None, [None, 3], [2**62]] + [[i] for i in range(n - 5)], pa.list_(pa.int64())
            ),
            "event_types": pa.array(
                [["view", "add_to_cart"], [], None, [None, "NULL"], ['q"uote', "co,mma", "{br}", "back\\", " sp "]]
                + [["view"]] * (n - 5),
                pa.list_(pa.string()),
            ),
        }
    )
    tables = OfflineTables(postgres_settings)
    where = tables.write("session_activity", table, "replace")
    assert where == f"{postgres_settings.offline_schema}.session_activity" == tables.location("session_activity")
    back = tables.read("session_activity")
    assert back.schema == table.schema
    assert same(back, table)


def test_fixed_width_columns_round_trip_exactly(postgres_settings: Settings) -> None:
    # no strings, lists or nulls: the binary COPY path
    stamps = [datetime(1969, 12, 31, 23, 59, 59, 999_999), datetime(1999, 12, 31, 23, 59, 59), datetime(2100, 1, 1)]
    table = pa.table(
        {
            "item_id": pa.array([-(2**63), 0, 2**63 - 1], pa.int64()),
            "event_timestamp": pa.array([s.replace(tzinfo=UTC) for s in stamps], TS),
            "local_time": pa.array(stamps, pa.timestamp("us")),
            "score": pa.array([math.nan, -0.0, 5e-324], pa.float64()),
            "extreme": pa.array([math.inf, -math.inf, 1.7976931348623157e308], pa.float64()),
            "small": pa.array([1.5, -2.25, 3.0e38], pa.float32()),
            "count": pa.array([-(2**31), 0, 2**31 - 1], pa.int32()),
            "tiny": pa.array([-(2**15), 0, 2**15 - 1], pa.int16()),
            "flag": pa.array([True, False, True]),
            "day": pa.array([date(1969, 12, 31), date(2000, 1, 1), date(2100, 2, 28)], pa.date32()),
        }
    )
    tables = OfflineTables(postgres_settings)
    tables.write("item_popularity", table, "replace")
    assert same(tables.read("item_popularity"), table)


def test_a_large_table_is_loaded_in_several_copy_batches(postgres_settings: Settings) -> None:
    table = rows(list(range(150_000)))
    tables = OfflineTables(postgres_settings)
    tables.write("user_activity", table, "replace")
    assert tables.read("user_activity").sort_by("user_id").equals(table)


def test_an_empty_table_round_trips_with_its_columns(postgres_settings: Settings) -> None:
    tables = OfflineTables(postgres_settings)
    tables.write("user_activity", rows([]), "replace")
    assert tables.read("user_activity").equals(rows([]))


def test_exists_tells_whether_a_view_was_written(postgres_settings: Settings) -> None:
    tables = OfflineTables(postgres_settings)
    assert not tables.exists("user_activity")
    tables.write("user_activity", rows([1]), "replace")
    assert tables.exists("user_activity")


def test_replace_swaps_the_table_and_leaves_no_staging_table(postgres_settings: Settings) -> None:
    tables = OfflineTables(postgres_settings)
    tables.write("user_activity", rows([1, 2, 3]), "replace")
    tables.write("user_activity", rows([9], value=2.0), "replace")
    assert tables.read("user_activity").equals(rows([9], value=2.0))
    assert tables_in_schema(postgres_settings) == ["user_activity"]


def test_the_table_is_indexed_on_entity_key_and_event_timestamp(postgres_settings: Settings) -> None:
    OfflineTables(postgres_settings).write("user_activity", rows([1]), "replace")
    with connect(postgres_settings) as conn:
        (definition,) = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = 'user_activity'",
            (postgres_settings.offline_schema,),
        ).fetchone() or (None,)
    assert definition is not None
    assert definition.endswith("(user_id, event_timestamp)")


def test_a_failed_replace_leaves_the_old_table_readable(
    postgres_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables = OfflineTables(postgres_settings)
    tables.write("user_activity", rows([1, 2]), "replace")
    real_write = psycopg.Copy.write
    chunks = 0

    def corrupt_the_second_chunk(self: psycopg.Copy, data: Any) -> None:
        nonlocal chunks
        chunks += 1
        real_write(self, b"garbage, not a row\n" if chunks == 2 else data)

    monkeypatch.setattr(psycopg.Copy, "write", corrupt_the_second_chunk)
    with pytest.raises(psycopg.Error):
        tables.write("user_activity", rows(list(range(100_000))), "replace")
    monkeypatch.undo()
    assert tables.read("user_activity").equals(rows([1, 2]))
    assert tables_in_schema(postgres_settings) == ["user_activity"]


def test_a_reader_during_a_replace_sees_the_old_table(
    postgres_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables = OfflineTables(postgres_settings)
    tables.write("user_activity", rows([1, 2]), "replace")
    seen: list[pa.Table] = []
    real_write = psycopg.Copy.write

    def read_while_loading(self: psycopg.Copy, data: Any) -> None:
        seen.append(OfflineTables(postgres_settings).read("user_activity"))  # another connection, mid-load
        real_write(self, data)

    monkeypatch.setattr(psycopg.Copy, "write", read_while_loading)
    tables.write("user_activity", rows([7, 8, 9]), "replace")
    monkeypatch.undo()
    assert seen and all(t.equals(rows([1, 2])) for t in seen)
    assert tables.read("user_activity").equals(rows([7, 8, 9]))


def test_append_adds_rows(postgres_settings: Settings) -> None:
    tables = OfflineTables(postgres_settings)
    tables.write("user_activity", rows([1]), "replace")
    tables.write("user_activity", rows([2, 3]).select(["score", "user_id", "event_timestamp"]), "append")
    assert tables.read("user_activity").sort_by("user_id").equals(rows([1, 2, 3]))


def test_append_to_a_missing_view_creates_it(postgres_settings: Settings) -> None:
    tables = OfflineTables(postgres_settings)
    tables.write("session_activity", rows([4]), "append")
    assert tables.read("session_activity").equals(rows([4]))


def test_append_with_different_columns_is_refused_and_stores_nothing(postgres_settings: Settings) -> None:
    tables = OfflineTables(postgres_settings)
    tables.write("user_activity", rows([1]), "replace")
    with pytest.raises(InvalidInputError, match="differ"):
        tables.write("user_activity", rows([2]).drop_columns(["score"]), "append")
    assert tables.read("user_activity").equals(rows([1]))


def test_drop_all_removes_the_tables(postgres_settings: Settings) -> None:
    tables = OfflineTables(postgres_settings)
    tables.write("user_activity", rows([1]), "replace")
    tables.write("item_popularity", rows([1]), "replace")
    tables.drop_all()
    assert not tables.exists("user_activity")
    assert not tables.exists("item_popularity")


def test_an_unreachable_server_is_reported_with_its_host_and_port() -> None:
    with socket.socket() as probe:  # a port nobody listens on: bound, then released
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(
        profile="prod",
        admin_token="integration-test-token",
        postgres_dsn=f"postgresql+psycopg://postgres@127.0.0.1:{port}/test",
    )
    with pytest.raises(ServiceUnavailableError, match=f"127.0.0.1:{port}"):
        OfflineTables(settings).read("user_activity")
