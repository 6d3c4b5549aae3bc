from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli import app
from journey.datasets.store import DatasetStore
from journey.settings import Settings

runner = CliRunner()
HEADER = "timestamp,visitorid,event,itemid,transactionid\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_import_prints_where_the_dataset_went(settings: Settings, tmp_path: Path) -> None:
    src = write(tmp_path / "e.csv", HEADER + "1433221332117,1,view,10,\n1433221332118,1,addtocart,10,\n")
    result = runner.invoke(app, ["data", "import", str(src), "--format", "retailrocket", "--dataset", "rr"])
    assert result.exit_code == 0, result.output
    target = settings.events_dir / "rr"
    assert str(target) in result.output.replace("\n", "")
    assert json.loads((target / "manifest.json").read_text())["rows"] == 2


def test_strict_import_exits_2_naming_field_and_value_and_stores_nothing(settings: Settings, tmp_path: Path) -> None:
    src = write(tmp_path / "e.csv", HEADER + "1433221332117,1,view,10,\n1433221332118,1,click,10,\n")
    result = runner.invoke(app, ["data", "import", str(src), "-f", "retailrocket", "-d", "rr", "--strict"])
    assert result.exit_code == 2
    assert "row 2" in result.output and "event_type" in result.output and "click" in result.output
    assert not (settings.events_dir / "rr").exists()


def test_lenient_import_keeps_good_rows_and_reports_bad_ones(settings: Settings, tmp_path: Path) -> None:
    src = write(tmp_path / "e.csv", HEADER + "1433221332117,1,view,10,\n1433221332118,1,click,10,\n")
    result = runner.invoke(app, ["data", "import", str(src), "-f", "retailrocket", "-d", "rr"])
    assert result.exit_code == 0, result.output
    assert "1 of 2 rows rejected" in result.output and "unknown_event_type" in result.output
    manifest = json.loads((settings.events_dir / "rr" / "manifest.json").read_text())
    assert manifest["rows"] == 1 and manifest["rejects_by_reason"] == {"unknown_event_type": 1}


def test_reimport_without_replace_exits_2_and_keeps_the_stored_data(settings: Settings, tmp_path: Path) -> None:
    first = write(tmp_path / "a.csv", HEADER + "1433221332117,1,view,10,\n")
    second = write(tmp_path / "b.csv", HEADER + "1433221332117,2,view,11,\n1433221332118,2,view,12,\n")
    assert runner.invoke(app, ["data", "import", str(first), "-f", "retailrocket", "-d", "rr"]).exit_code == 0
    result = runner.invoke(app, ["data", "import", str(second), "-f", "retailrocket", "-d", "rr"])
    assert result.exit_code == 2 and "--replace" in result.output
    assert json.loads((settings.events_dir / "rr" / "manifest.json").read_text())["rows"] == 1


def test_unknown_format_exits_2_with_the_value(settings: Settings, tmp_path: Path) -> None:
    src = write(tmp_path / "e.csv", HEADER)
    result = runner.invoke(app, ["data", "import", str(src), "-f", "csvish", "-d", "x"])
    assert result.exit_code == 2 and "csvish" in result.output


def test_invalid_dataset_name_exits_2(settings: Settings, tmp_path: Path) -> None:
    src = write(tmp_path / "e.csv", HEADER)
    result = runner.invoke(app, ["data", "import", str(src), "-f", "retailrocket", "-d", "../up"])
    assert result.exit_code == 2 and "../up" in result.output


def test_validate_exits_2_and_lists_problems_without_storing(settings: Settings, tmp_path: Path) -> None:
    src = write(tmp_path / "e.csv", HEADER + "1433221332117,x,view,10,\n")
    result = runner.invoke(app, ["data", "validate", str(src), "-f", "retailrocket"])
    assert result.exit_code == 2
    assert "unparsable_value" in result.output and "user_id" in result.output
    assert not settings.events_dir.exists()


def test_validate_exits_0_on_a_clean_file(settings: Settings, tmp_path: Path) -> None:
    src = write(tmp_path / "e.csv", HEADER + "1433221332117,1,view,10,\n")
    result = runner.invoke(app, ["data", "validate", str(src), "-f", "retailrocket"])
    assert result.exit_code == 0 and "1 valid" in result.output


def test_stats_of_a_missing_dataset_exits_2(settings: Settings) -> None:
    result = runner.invoke(app, ["data", "stats", "nope"])
    assert result.exit_code == 2 and "nope" in result.output


# a DIGINETICA-like log: `;`-separated, no user id on most rows, a date plus a millisecond offset
VIEWS = "sessionId;userId;itemId;timeframe;eventdate\n1;;81766;526309;2016-05-09\n1;;31331;1031018;2016-05-09\n"
MAPPING = """
delimiter: ";"
columns: {session_id: sessionId, user_id: userId, item_id: itemId}
event_type: {constant: view}
timestamp: {date: eventdate, offset: timeframe, offset_unit: ms}
"""


def test_anonymous_sessions_import_and_the_choice_is_recorded_in_the_manifest(
    settings: Settings, tmp_path: Path
) -> None:
    src = write(tmp_path / "views.csv", VIEWS)
    fmt = write(tmp_path / "dg.yaml", MAPPING + "anonymous_users: anonymous_id\n")
    result = runner.invoke(app, ["data", "import", str(src), "-f", str(fmt), "-d", "dg"])
    assert result.exit_code == 0, result.output
    assert "2 rows without a user id" in result.output
    manifest = json.loads((settings.events_dir / "dg" / "manifest.json").read_text())
    assert manifest["rows"] == 2 and manifest["sessions"] == 1
    assert manifest["sources"][0]["anonymous_users"] == "anonymous_id"
    assert manifest["sources"][0]["anonymous_rows"] == 2


def test_an_import_where_every_row_is_rejected_exits_2_summarising_why_and_stores_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    src = write(tmp_path / "views.csv", VIEWS)
    fmt = write(tmp_path / "dg.yaml", MAPPING)  # anonymous users rejected (the default)
    result = runner.invoke(app, ["data", "import", str(src), "-f", str(fmt), "-d", "dg"])
    assert result.exit_code == 2, result.output
    output = result.output.replace("\n", "")
    assert "every one of the 2 rows" in output and "missing_id 2" in output
    assert "anonymous_users" in output and "Nothing was stored" in output
    assert "Traceback" not in result.output
    assert not (settings.events_dir / "dg").exists()


def test_an_all_rejected_append_leaves_the_stored_dataset_as_it_was(settings: Settings, tmp_path: Path) -> None:
    good = write(tmp_path / "a.csv", HEADER + "1433221332117,1,view,10,\n")
    bad = write(tmp_path / "b.csv", HEADER + "1433221332117,1,click,10,\n")
    assert runner.invoke(app, ["data", "import", str(good), "-f", "retailrocket", "-d", "rr"]).exit_code == 0
    result = runner.invoke(app, ["data", "import", str(bad), "-f", "retailrocket", "-d", "rr", "--append"])
    assert result.exit_code == 2 and "unknown_event_type 1" in result.output
    manifest = json.loads((settings.events_dir / "rr" / "manifest.json").read_text())
    assert manifest["rows"] == 1 and len(manifest["sources"]) == 1


def test_a_file_with_a_header_only_exits_2_and_stores_nothing(settings: Settings, tmp_path: Path) -> None:
    src = write(tmp_path / "e.csv", HEADER)
    result = runner.invoke(app, ["data", "import", str(src), "-f", "retailrocket", "-d", "rr"])
    assert result.exit_code == 2 and "holds no rows" in result.output
    assert not (settings.events_dir / "rr").exists()


def test_a_missing_mapped_column_exits_2_naming_the_columns_found_and_the_delimiter(
    settings: Settings, tmp_path: Path
) -> None:
    src = write(tmp_path / "views.csv", VIEWS)
    fmt = write(tmp_path / "dg.yaml", MAPPING.replace('delimiter: ";"\n', "") + "anonymous_users: anonymous_id\n")
    result = runner.invoke(app, ["data", "import", str(src), "-f", str(fmt), "-d", "dg"])
    assert result.exit_code == 2, result.output
    output = result.output.replace("\n", "")
    assert "'itemId' (item_id)" in output and "['sessionId;userId;itemId;timeframe;eventdate']" in output
    assert 'delimiter: ";"' in output and "Traceback" not in result.output
    assert not (settings.events_dir / "dg").exists()


def test_an_append_of_the_same_file_again_exits_0_counting_duplicates_and_changes_no_event(
    settings: Settings, tmp_path: Path
) -> None:
    src = write(tmp_path / "a.csv", HEADER + "1433221332117,1,view,10,\n1433221332118,1,view,11,\n")
    assert runner.invoke(app, ["data", "import", str(src), "-f", "retailrocket", "-d", "rr"]).exit_code == 0
    before = DatasetStore(settings.events_dir).events("rr").sort_by("event_id")

    result = runner.invoke(app, ["data", "import", str(src), "-f", "retailrocket", "-d", "rr", "--append"])

    assert result.exit_code == 0, result.output
    assert "2 events already stored" in result.output
    assert DatasetStore(settings.events_dir).events("rr").sort_by("event_id").equals(before)
