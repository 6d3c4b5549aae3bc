"""Side files (more events from another file, values joined by key) and the public session-log shapes they serve."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from journey.datasets import SourceFormat
from journey.datasets.importer import import_events
from journey.errors import ConfigError, NotFoundError

TIMEOUT = 1800
NOW = datetime(2026, 1, 1, tzinfo=UTC)

# DIGINETICA's layout: `;`-separated, userId mostly empty, eventdate a date and timeframe milliseconds within it
DIGINETICA = """
name: diginetica
delimiter: ";"
columns: {session_id: sessionId, user_id: userId, item_id: itemId}
event_type: {constant: view}
timestamp: {date: eventdate, offset: timeframe, offset_unit: ms}
anonymous_users: anonymous_id
side_files:
  - kind: events
    path: train-purchases.csv
    event_type: {constant: purchase}
  - kind: lookup
    path: product-categories.csv
    join: {item_id: itemId}
    columns: {category_id: categoryId}
"""
VIEWS = (
    "sessionId;userId;itemId;timeframe;eventdate\n"
    "1;;81766;526309;2016-05-09\n"
    "1;;31331;1031018;2016-05-09\n"
    "2;5;32118;243569;2016-05-09\n"
    "3;;11;86400000;2016-05-09\n"
)
PURCHASES = "sessionId;userId;timeframe;eventdate;ordernumber;itemId\n1;;1040000;2016-05-09;100;31331\n"
CATEGORIES = "itemId;categoryId\n81766;1\n31331;2\n31331;3\nzz;4\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def diginetica(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    write(data / "train-purchases.csv", PURCHASES)
    write(data / "product-categories.csv", CATEGORIES)
    return write(data / "train-item-views.csv", VIEWS)


def test_a_diginetica_like_log_imports_with_anonymous_sessions_composed_times_purchases_and_categories(
    tmp_path: Path, diginetica: Path
) -> None:
    fmt = SourceFormat.from_yaml(write(tmp_path / "diginetica.yaml", DIGINETICA))
    result = import_events(diginetica, fmt, session_timeout_s=TIMEOUT, now=NOW)
    rows = sorted(result.events.to_pylist(), key=lambda r: (r["event_timestamp"], r["event_type"]))
    assert [(r["session_id"], r["item_id"], r["event_type"], r["category_id"]) for r in rows] == [
        ("2", 32118, "view", None),
        ("1", 81766, "view", 1),
        ("1", 31331, "view", 2),  # the first row of a repeated key wins
        ("1", 31331, "purchase", 2),  # the purchases file is joined too
        ("3", 11, "view", None),
    ]
    assert rows[1]["event_timestamp"] == datetime(2016, 5, 9, 0, 8, 46, 309000, tzinfo=UTC)
    assert rows[-1]["event_timestamp"] == datetime(2016, 5, 10, tzinfo=UTC)  # offsets may pass midnight
    users = {r["session_id"]: r["user_id"] for r in rows}
    assert users["2"] == 5 and users["1"] < 0 and users["3"] < 0 and users["1"] != users["3"]
    assert result.rows_in == 5 and result.rejects.num_rows == 0
    assert result.anonymous_rows == 4


def test_the_side_files_are_recorded_with_their_rows_and_matches(tmp_path: Path, diginetica: Path) -> None:
    fmt = SourceFormat.from_yaml(write(tmp_path / "diginetica.yaml", DIGINETICA))
    recorded = import_events(diginetica, fmt, session_timeout_s=TIMEOUT, now=NOW).provenance()
    events, lookup = recorded["side_files"]
    assert events == {
        "kind": "events",
        "path": str(diginetica.parent / "train-purchases.csv"),
        "rows_in": 1,
        "first_row": 5,
        "last_row": 5,
    }
    assert lookup["keys"] == 2 and lookup["repeated_keys"] == 1 and lookup["rows_skipped"] == 1
    assert lookup["rows_matched"] == 3


def test_bad_rows_of_an_events_side_file_are_numbered_after_the_main_files(tmp_path: Path, diginetica: Path) -> None:
    write(diginetica.parent / "train-purchases.csv", PURCHASES + "1;;1040000;2016-05-09;100;oops\n")
    fmt = SourceFormat.from_yaml(write(tmp_path / "diginetica.yaml", DIGINETICA))
    result = import_events(diginetica, fmt, session_timeout_s=TIMEOUT, now=NOW)
    assert result.rejects.to_pylist() == [{"row": 6, "field": "item_id", "value": "oops", "reason": "unparsable_value"}]


# YOOCHOOSE's layout: header-less clicks with ISO times and no user column; buys in a file of their own
YOOCHOOSE = """
name: yoochoose
header: false
column_names: [session_id, timestamp, item_id, category]
columns: {session_id: session_id, event_timestamp: timestamp, item_id: item_id, category_id: category}
event_type: {constant: view}
timestamp_format: iso
anonymous_users: session
side_files:
  - kind: events
    path: yoochoose-buys.dat
    column_names: [session_id, timestamp, item_id, price, quantity]
    columns: {session_id: session_id, event_timestamp: timestamp, item_id: item_id, price: price}
    event_type: {constant: purchase}
"""


def test_a_yoochoose_like_log_imports_clicks_and_buys_with_the_session_as_user(tmp_path: Path) -> None:
    write(tmp_path / "yoochoose-buys.dat", "1,2014-04-07T10:55:00.000Z,214536500,1046,2\n")
    clicks = write(
        tmp_path / "yoochoose-clicks.dat",
        "1,2014-04-07T10:51:09.277Z,214536502,0\n1,2014-04-07T10:54:09.868Z,214536500,0\n",
    )
    fmt = SourceFormat.from_yaml(write(tmp_path / "yoochoose.yaml", YOOCHOOSE))
    events = import_events(clicks, fmt, session_timeout_s=TIMEOUT, now=NOW).events
    assert events["event_type"].to_pylist() == ["view", "view", "purchase"]
    assert events["user_id"].to_pylist() == [1, 1, 1]
    assert events["price"].to_pylist() == [None, None, 1046.0]
    assert events["event_timestamp"][0].as_py() == datetime(2014, 4, 7, 10, 51, 9, 277000, tzinfo=UTC)


LOOKUP_ONLY = """
columns: {user_id: user, item_id: item, event_timestamp: at, category_id: cat}
event_type: {constant: view}
timestamp_unit: s
side_files:
  - {kind: lookup, path: items.csv, join: {item_id: id}, columns: {category_id: category, price: price}}
"""


def test_a_lookup_fills_only_empty_cells_and_a_bad_own_value_stays_reported(tmp_path: Path) -> None:
    write(tmp_path / "items.csv", "id,category,price\n10,7,2.5\n11,8,\n12,9,1.0\n")
    source = write(tmp_path / "e.csv", "user,item,at,cat\n1,10,1700000000,\n1,11,1700000001,3\n1,12,1700000002,x\n")
    fmt = SourceFormat.from_yaml(write(tmp_path / "m.yaml", LOOKUP_ONLY))
    result = import_events(source, fmt, session_timeout_s=TIMEOUT, now=NOW)
    assert result.events["category_id"].to_pylist() == [7, 3]  # the event's own category wins
    assert result.events["price"].to_pylist() == [2.5, None]
    assert result.rejects.to_pylist() == [
        {"row": 3, "field": "category_id", "value": "x", "reason": "unparsable_value"}
    ]


def test_a_missing_side_file_is_not_found_with_its_path(tmp_path: Path) -> None:
    source = write(tmp_path / "e.csv", "user,item,at,cat\n1,10,1700000000,\n")
    fmt = SourceFormat.from_yaml(write(tmp_path / "m.yaml", LOOKUP_ONLY))
    with pytest.raises(NotFoundError, match=r"items\.csv"):
        import_events(source, fmt, session_timeout_s=TIMEOUT, now=NOW)


def test_an_events_side_file_inherits_the_keys_it_does_not_set(tmp_path: Path) -> None:
    fmt = SourceFormat.from_yaml(write(tmp_path / "diginetica.yaml", DIGINETICA))
    (purchases,) = fmt.events_files
    assert purchases.delimiter == ";" and purchases.timestamp == fmt.timestamp
    assert purchases.anonymous_users == "anonymous_id"
    assert purchases.event_type is not None and purchases.event_type.constant == "purchase"
    assert fmt.lookups[0].delimiter == ";"  # a lookup inherits only the delimiter


def test_an_events_side_file_without_the_main_files_sessions_is_refused(tmp_path: Path) -> None:
    text = DIGINETICA.replace(
        "event_type: {constant: purchase}",
        "event_type: {constant: purchase}\n    columns: {user_id: u, item_id: i}\n    anonymous_users: reject",
    )
    with pytest.raises(ConfigError, match=r"side file train-purchases\.csv: map session_id and event_id exactly when"):
        SourceFormat.from_yaml(write(tmp_path / "m.yaml", text))


def test_an_unknown_key_in_a_side_file_is_refused_naming_the_file_and_the_key(tmp_path: Path) -> None:
    text = DIGINETICA.replace("join: {item_id: itemId}", "join: {item_id: itemId}\n    colour: blue")
    with pytest.raises(ConfigError, match=r"m\.yaml: side_files\.1\.lookup\.colour: Extra inputs are not permitted"):
        SourceFormat.from_yaml(write(tmp_path / "m.yaml", text))
