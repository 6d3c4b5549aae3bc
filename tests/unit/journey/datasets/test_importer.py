from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from journey.datasets.formats import REES46, RETAILROCKET, TAOBAO, SourceFormat
from journey.datasets.importer import import_events
from journey.errors import ConfigError, NotFoundError
from journey.events import EVENT_SCHEMA

TIMEOUT = 1800
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def by_type(table: pa.Table) -> dict[str, int]:
    counts = table.group_by("event_type").aggregate([("event_id", "count")])
    return dict(zip(counts["event_type"].to_pylist(), counts["event_id_count"].to_pylist(), strict=True))


# --- real samples: counts from ../shared/datasets/README.md -------------------------------------------------------


def test_retailrocket_sample_matches_its_readme(shared_datasets: Path) -> None:
    result = import_events(
        shared_datasets / "retailrocket_sample/events.csv.gz", RETAILROCKET, session_timeout_s=TIMEOUT
    )
    events = result.events
    assert result.rows_in == 2_771
    # the sample holds one exact duplicate addtocart row: it is reported, not dropped silently
    assert result.counts_by_reason() == {"duplicate_event_id": 1}
    assert by_type(events) == {"view": 2_695, "add_to_cart": 62 - 1, "purchase": 14}
    assert pc.count_distinct(events["user_id"]).as_py() == 1_500
    assert pc.count_distinct(events["item_id"]).as_py() == 2_127
    assert pc.min(events["event_timestamp"]).as_py() == datetime(2015, 5, 3, 7, 24, 35, 596000, tzinfo=UTC)
    assert events.schema == EVENT_SCHEMA


def test_rees46_sample_matches_its_readme(shared_datasets: Path) -> None:
    result = import_events(shared_datasets / "rees46_2019-Oct_head.csv.gz", REES46, session_timeout_s=TIMEOUT)
    events = result.events
    assert result.rows_in == 17_434
    # the sample repeats 5 rows byte for byte (17,429 distinct lines): reported as duplicates, not dropped silently
    assert result.counts_by_reason() == {"duplicate_event_id": 5}
    assert events.num_rows == 17_429
    duplicated = pc.value_counts(result.rejects["row"]).to_pylist()
    assert len(duplicated) == 5
    assert by_type(events)["purchase"] == 214
    assert pc.count_distinct(events["user_id"]).as_py() == 4_504
    assert pc.count_distinct(events["item_id"]).as_py() == 6_493
    # REES46 carries its own sessions: all of them survive (duplicates are exact repeats inside one session)
    assert pc.count_distinct(events["session_id"]).as_py() == 5_066
    assert pc.max(events["event_timestamp"]).as_py() == datetime(2019, 10, 1, 2, 50, tzinfo=UTC)


def test_taobao_sample_imports_with_its_headerless_layout(shared_datasets: Path) -> None:
    result = import_events(
        shared_datasets / "taobao_userbehavior_head/UserBehavior_head.csv.gz",
        TAOBAO,
        session_timeout_s=TIMEOUT,
    )
    assert result.rows_in == 4_321
    assert by_type(result.events) == {"view": 3_926, "add_to_cart": 190 + 128, "purchase": 77}
    assert pc.count_distinct(result.events["user_id"]).as_py() == 43


# --- bad input in files -----------------------------------------------------------------------------------------


def test_malformed_lines_are_reported_with_their_row(tmp_path: Path) -> None:
    path = write(
        tmp_path / "e.csv",
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1433221332117,1,view,10,\n"
        "1433221332118,1,view\n"
        "1433221332119,1,addtocart,10,\n",
    )
    result = import_events(path, RETAILROCKET, session_timeout_s=TIMEOUT, now=NOW)
    assert result.events.num_rows == 2
    assert result.rejects.to_pylist() == [
        {"row": 2, "field": "<line>", "value": "1433221332118,1,view", "reason": "malformed_row"}
    ]


def test_non_numeric_ids_are_reported_as_unparsable_with_the_value(tmp_path: Path) -> None:
    path = write(
        tmp_path / "e.csv",
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1433221332117,1,view,10,\n"
        "1433221332118,abc,view,11,\n"
        "not-a-time,1,view,12,\n"
        "1433221332119,1,click,13,\n"
        "1433221332120,,view,14,\n",
    )
    result = import_events(path, RETAILROCKET, session_timeout_s=TIMEOUT, now=NOW)
    assert result.events["item_id"].to_pylist() == [10]
    assert [(r["row"], r["field"], r["value"], r["reason"]) for r in result.rejects.to_pylist()] == [
        (2, "user_id", "abc", "unparsable_value"),
        (3, "event_timestamp", "not-a-time", "unparsable_timestamp"),
        (4, "event_type", "click", "unknown_event_type"),
        (5, "user_id", "", "missing_id"),
    ]


def test_exact_duplicate_rows_get_one_content_id(tmp_path: Path) -> None:
    line = "1433221332117,1,view,10,\n"
    path = write(tmp_path / "e.csv", "timestamp,visitorid,event,itemid,transactionid\n" + line * 3)
    result = import_events(path, RETAILROCKET, session_timeout_s=TIMEOUT, now=NOW)
    assert result.events.num_rows == 1
    assert result.events["event_id"][0].as_py().startswith("rr-")
    assert result.rejects["value"].to_pylist() == [result.events["event_id"][0].as_py()] * 2


def test_gzip_and_plain_files_import_identically(tmp_path: Path) -> None:
    text = "timestamp,visitorid,event,itemid,transactionid\n1433221332117,1,view,10,\n"
    plain = write(tmp_path / "e.csv", text)
    packed = tmp_path / "e.csv.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    a = import_events(plain, RETAILROCKET, session_timeout_s=TIMEOUT, now=NOW).events
    b = import_events(packed, RETAILROCKET, session_timeout_s=TIMEOUT, now=NOW).events
    assert a.equals(b)


def test_missing_source_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"nope\.csv"):
        import_events(tmp_path / "nope.csv", RETAILROCKET, session_timeout_s=TIMEOUT)


# --- generic adapter --------------------------------------------------------------------------------------------

MAPPING = """
name: shop
columns:
  event_id: id
  user_id: customer
  item_id: sku
  event_type: action
  event_timestamp: at
  price: amount
event_types: {seen: view, basket: add_to_cart, unbasket: remove_from_cart, order: purchase}
timestamp_format: iso
timezone: Europe/Berlin
"""


def test_generic_mapping_reads_iso_timestamps_with_and_without_offsets(tmp_path: Path) -> None:
    fmt = SourceFormat.from_yaml(write(tmp_path / "shop.yaml", MAPPING))
    path = write(
        tmp_path / "shop.csv",
        "id,customer,sku,action,at,amount\n"
        "a,1,5,seen,2025-06-01T12:00:00,3.5\n"
        "b,1,5,basket,2025-06-01T10:10:00Z,3.5\n"
        "c,1,5,order,2025-06-01 12:20:00+02:00,3.5\n",
    )
    events = import_events(path, fmt, session_timeout_s=TIMEOUT, now=NOW).events
    assert events["event_timestamp"].to_pylist() == [
        datetime(2025, 6, 1, 10, 0, tzinfo=UTC),
        datetime(2025, 6, 1, 10, 10, tzinfo=UTC),
        datetime(2025, 6, 1, 10, 20, tzinfo=UTC),
    ]
    assert events["event_type"].to_pylist() == ["view", "add_to_cart", "purchase"]
    assert events["event_id"].to_pylist() == ["a", "b", "c"]
    assert len(set(events["session_id"].to_pylist())) == 1


def test_generic_mapping_reads_parquet(tmp_path: Path) -> None:
    fmt = SourceFormat.from_yaml(write(tmp_path / "shop.yaml", MAPPING))
    pq.write_table(
        pa.table(
            {
                "id": ["a", "b"],
                "customer": [1, 2],
                "sku": [5, 6],
                "action": ["seen", "order"],
                "at": ["2025-06-01T12:00:00", "2025-06-01T13:00:00"],
                "amount": [1.0, -2.0],
            }
        ),
        tmp_path / "shop.parquet",
    )
    result = import_events(tmp_path / "shop.parquet", fmt, session_timeout_s=TIMEOUT, now=NOW)
    assert result.events["event_id"].to_pylist() == ["a"]
    assert result.counts_by_reason() == {"negative_price": 1}


def test_mapping_errors_name_the_file_and_field(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", MAPPING.replace("order: purchase", "order: buy"))
    with pytest.raises(ConfigError, match=r"bad\.yaml.*unknown canonical types \['buy'\]"):
        SourceFormat.from_yaml(bad)
    extra = write(tmp_path / "extra.yaml", MAPPING + "colour: blue\n")
    with pytest.raises(ConfigError, match=r"extra\.yaml: colour"):
        SourceFormat.from_yaml(extra)
