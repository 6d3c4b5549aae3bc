"""Each YAML mapping option on a small hand-written file: what it reads, and what it refuses."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from journey.datasets import ImportResult, SourceFormat
from journey.datasets.importer import import_events, nothing_imported
from journey.errors import ConfigError, InvalidInputError

TIMEOUT = 1800
NOW = datetime(2026, 1, 1, tzinfo=UTC)
BASE = "name: shop\ncolumns: {user_id: user, item_id: item, event_type: action, event_timestamp: at}\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def mapping(tmp_path: Path, text: str, name: str = "m.yaml") -> SourceFormat:
    return SourceFormat.from_yaml(write(tmp_path / name, text))


def run(tmp_path: Path, fmt: SourceFormat, text: str, name: str = "e.csv") -> ImportResult:
    return import_events(write(tmp_path / name, text), fmt, session_timeout_s=TIMEOUT, now=NOW)


def problems(result: ImportResult) -> list[tuple[int, str, str, str]]:
    return [(r["row"], r["field"], r["value"], r["reason"]) for r in result.rejects.to_pylist()]


# --- delimiter ----------------------------------------------------------------------------------------------------


def test_a_semicolon_delimiter_reads_a_semicolon_file(tmp_path: Path) -> None:
    fmt = mapping(tmp_path, BASE + 'delimiter: ";"\ntimestamp_unit: s\n')
    result = run(tmp_path, fmt, "user;item;action;at\n1;10;view;1700000000\n1;11;purchase;1700000060\n")
    assert result.events["item_id"].to_pylist() == [10, 11]
    assert result.events["event_type"].to_pylist() == ["view", "purchase"]


def test_a_tab_delimiter_is_written_as_an_escaped_t(tmp_path: Path) -> None:
    fmt = mapping(tmp_path, BASE + 'delimiter: "\\t"\ntimestamp_unit: s\n')
    assert run(tmp_path, fmt, "user\titem\taction\tat\n1\t10\tview\t1700000000\n").events.num_rows == 1


def test_a_delimiter_of_two_characters_is_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"m\.yaml: delimiter: .*one character"):
        mapping(tmp_path, BASE + "delimiter: '\\t'\ntimestamp_unit: s\n")


def test_a_missing_column_is_refused_naming_it_the_columns_found_and_the_delimiter(tmp_path: Path) -> None:
    fmt = mapping(tmp_path, BASE + "timestamp_unit: s\n")
    with pytest.raises(InvalidInputError) as caught:
        run(tmp_path, fmt, "user;item;action;at\n1;10;view;1700000000\n")
    message = str(caught.value)
    assert "'item' (item_id)" in message and "['user;item;action;at']" in message
    assert 'delimiter: ";"' in message


def test_a_missing_column_in_a_well_delimited_file_names_the_columns_found_without_a_delimiter_hint(
    tmp_path: Path,
) -> None:
    fmt = mapping(tmp_path, BASE + "timestamp_unit: s\n")
    with pytest.raises(InvalidInputError, match=r"'at' \(event_timestamp\).*\['user', 'item', 'action', 'when'\]$"):
        run(tmp_path, fmt, "user,item,action,when\n1,10,view,1700000000\n")


# --- event types --------------------------------------------------------------------------------------------------


def test_a_constant_event_type_reads_a_file_without_a_type_column(tmp_path: Path) -> None:
    fmt = mapping(
        tmp_path,
        "columns: {user_id: user, item_id: item, event_timestamp: at}\nevent_type: {constant: view}\n"
        "timestamp_unit: s\n",
    )
    result = run(tmp_path, fmt, "user,item,at\n1,10,1700000000\n1,11,1700000060\n")
    assert result.events["event_type"].to_pylist() == ["view", "view"]


def test_a_default_event_type_fills_empty_type_cells_and_unknown_values_stay_rejected(tmp_path: Path) -> None:
    fmt = mapping(tmp_path, BASE + "event_types: {buy: purchase}\nevent_type: {default: view}\ntimestamp_unit: s\n")
    result = run(tmp_path, fmt, "user,item,action,at\n1,10,,1700000000\n1,11,buy,1700000060\n1,12,zap,1700000090\n")
    assert result.events["event_type"].to_pylist() == ["view", "purchase"]
    assert problems(result) == [(3, "event_type", "zap", "unknown_event_type")]


def test_a_constant_event_type_beside_a_type_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"m\.yaml: .*event_type\.constant excludes columns\.event_type"):
        mapping(tmp_path, BASE + "event_type: {constant: view}\ntimestamp_unit: s\n")


def test_an_event_type_rule_outside_the_canonical_types_is_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"m\.yaml: event_type\.constant: .*'click' is not a canonical event type"):
        mapping(tmp_path, BASE.replace(" event_type: action,", "") + "event_type: {constant: click}\n")


# --- timestamps ---------------------------------------------------------------------------------------------------


def test_epoch_seconds_with_fractions_keep_their_microseconds(tmp_path: Path) -> None:
    fmt = mapping(tmp_path, BASE + "timestamp_unit: s\n")
    result = run(tmp_path, fmt, "user,item,action,at\n1,10,view,1511544070.123456\n1,11,view,1511544071\n")
    assert result.events["event_timestamp"].to_pylist() == [
        datetime(2017, 11, 24, 17, 21, 10, 123456, tzinfo=UTC),
        datetime(2017, 11, 24, 17, 21, 11, tzinfo=UTC),
    ]


def test_epoch_milliseconds_with_fractions_and_a_bad_value_report_only_the_bad_one(tmp_path: Path) -> None:
    fmt = mapping(tmp_path, BASE + "timestamp_unit: ms\n")
    result = run(tmp_path, fmt, "user,item,action,at\n1,10,view,1511544070123.5\n1,11,view,soon\n1,12,view,1e30\n")
    assert result.events["event_timestamp"].to_pylist() == [datetime(2017, 11, 24, 17, 21, 10, 123500, tzinfo=UTC)]
    assert problems(result) == [
        (2, "event_timestamp", "soon", "unparsable_timestamp"),
        (3, "event_timestamp", "1e30", "unparsable_timestamp"),
    ]


def test_a_timestamp_composed_of_a_date_and_a_millisecond_offset(tmp_path: Path) -> None:
    fmt = mapping(
        tmp_path,
        "columns: {user_id: user, item_id: item}\nevent_type: {constant: view}\n"
        "timestamp: {date: day, offset: ms, offset_unit: ms}\ntimezone: Europe/Berlin\n",
    )
    result = run(tmp_path, fmt, "user,item,day,ms\n1,10,2016-05-09,526309\n1,11,2016-05-09,\n1,12,2016-13-09,5\n")
    # Berlin's midnight is 22:00 UTC in May
    assert result.events["event_timestamp"].to_pylist() == [datetime(2016, 5, 8, 22, 8, 46, 309000, tzinfo=UTC)]
    assert problems(result) == [
        (2, "event_timestamp", "2016-05-09 + ", "unparsable_timestamp"),  # an empty offset is no time, not midnight
        (3, "event_timestamp", "2016-13-09 + 5", "unparsable_timestamp"),
    ]


def test_a_date_without_an_offset_column_is_its_midnight(tmp_path: Path) -> None:
    fmt = mapping(
        tmp_path, "columns: {user_id: user, item_id: item}\nevent_type: {constant: view}\ntimestamp: {date: day}\n"
    )
    result = run(tmp_path, fmt, "user,item,day\n1,10,2016-05-09\n")
    assert result.events["event_timestamp"].to_pylist() == [datetime(2016, 5, 9, tzinfo=UTC)]


def test_a_composed_timestamp_beside_a_timestamp_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"set exactly one of timestamp_unit, timestamp_format and timestamp"):
        mapping(tmp_path, BASE + "timestamp_unit: s\ntimestamp: {date: day, offset: ms}\n")


# --- anonymous users ----------------------------------------------------------------------------------------------

SESSIONS = "columns: {session_id: visit, item_id: item, event_timestamp: at}\nevent_type: {constant: view}\n"
WITH_USERS = SESSIONS.replace("{session_id", "{user_id: user, session_id") + "timestamp_unit: s\n"


def test_rows_without_a_user_are_rejected_as_missing_id_by_default(tmp_path: Path) -> None:
    fmt = mapping(tmp_path, WITH_USERS)
    result = run(tmp_path, fmt, "visit,user,item,at\n7,,10,1700000000\n8,3,11,1700000000\n")
    assert problems(result) == [(1, "user_id", "", "missing_id")]
    assert result.anonymous_users == "reject" and result.anonymous_rows == 0


def test_anonymous_users_session_makes_each_session_its_own_user(tmp_path: Path) -> None:
    fmt = mapping(tmp_path, SESSIONS + "timestamp_unit: s\nanonymous_users: session\n")
    result = run(tmp_path, fmt, "visit,item,at\n7,10,1700000000\n7,11,1700000060\n9,12,1700000000\n")
    assert result.events["user_id"].to_pylist() == [7, 7, 9]
    assert result.events["session_id"].to_pylist() == ["7", "7", "9"]
    assert result.provenance() == {"anonymous_users": "session", "anonymous_rows": 3}


def test_anonymous_users_session_refuses_a_mapped_user_column(tmp_path: Path) -> None:
    text = WITH_USERS + "anonymous_users: session\n"
    with pytest.raises(ConfigError, match=r"m\.yaml: .*anonymous_users: session .* use anonymous_users: anonymous_id"):
        mapping(tmp_path, text)


def test_anonymous_ids_are_negative_stable_per_session_and_known_users_keep_theirs(tmp_path: Path) -> None:
    fmt = mapping(
        tmp_path,
        WITH_USERS + "anonymous_users: anonymous_id\n",
    )
    text = "visit,user,item,at\n7,,10,1700000000\n7,,11,1700000060\n8,3,12,1700000000\n9,,13,1700000000\n"
    users = run(tmp_path, fmt, text).events["user_id"].to_pylist()
    assert users[2] == 3
    assert users[0] == users[1] < 0 and users[3] < 0 and users[3] != users[0]
    assert abs(users[0]) <= 2**52  # exact in JSON, whatever the client
    assert run(tmp_path, fmt, text, name="again.csv").events["user_id"].to_pylist() == users


def test_a_user_id_that_is_not_a_number_is_still_reported_not_made_anonymous(tmp_path: Path) -> None:
    fmt = mapping(
        tmp_path,
        WITH_USERS + "anonymous_users: anonymous_id\n",
    )
    result = run(tmp_path, fmt, "visit,user,item,at\n7,abc,10,1700000000\n8,,11,1700000000\n")
    assert problems(result) == [(1, "user_id", "abc", "unparsable_value")]
    assert result.anonymous_rows == 1


def test_anonymous_users_need_a_session_column(tmp_path: Path) -> None:
    text = "columns: {item_id: item, event_timestamp: at}\nevent_type: {constant: view}\ntimestamp_unit: s\n"
    with pytest.raises(ConfigError, match=r"anonymous_users: anonymous_id needs columns\.session_id"):
        mapping(tmp_path, text + "anonymous_users: anonymous_id\n")


# --- layout -------------------------------------------------------------------------------------------------------


def test_a_headerless_mapping_must_name_every_column_it_reads(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"columns \['at'\] are not among column_names"):
        mapping(tmp_path, BASE + "timestamp_unit: s\nheader: false\ncolumn_names: [user, item, action]\n")


def test_parquet_files_take_the_same_options(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    fmt = mapping(tmp_path, SESSIONS + "timestamp_unit: s\nanonymous_users: session\n")
    pq.write_table(pa.table({"visit": ["4"], "item": [10], "at": [1700000000.5]}), tmp_path / "e.parquet")
    result = import_events(tmp_path / "e.parquet", fmt, session_timeout_s=TIMEOUT, now=NOW)
    assert result.events["user_id"].to_pylist() == [4]
    assert result.events["event_timestamp"].to_pylist() == [datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)]


def test_a_missing_column_in_a_parquet_file_names_the_columns_found(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    fmt = mapping(tmp_path, SESSIONS + "timestamp_unit: s\nanonymous_users: session\n")
    pq.write_table(pa.table({"visit": ["4"], "item": [10]}), tmp_path / "e.parquet")
    with pytest.raises(InvalidInputError, match=r"'at' \(event_timestamp\); columns found: \['visit', 'item'\]"):
        import_events(tmp_path / "e.parquet", fmt, session_timeout_s=TIMEOUT, now=NOW)


def test_a_headerless_file_whose_lines_all_break_is_refused_with_a_delimiter_hint(tmp_path: Path) -> None:
    fmt = mapping(tmp_path, BASE + "timestamp_unit: s\nheader: false\ncolumn_names: [user, item, action, at]\n")
    result = run(tmp_path, fmt, "1;10;view;1700000000\n1;11;view;1700000060\n")
    assert result.events.num_rows == 0 and result.counts_by_reason() == {"malformed_row": 2}
    message = str(nothing_imported(result))
    assert "every one of the 2 rows" in message and "check its delimiter" in message
