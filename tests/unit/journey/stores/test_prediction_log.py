"""The prediction log (batched, never blocking, Parquet on the embedded profile) and the outcome join."""

from __future__ import annotations

import threading
import time
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from journey.errors import InvalidInputError, ServiceUnavailableError
from journey.events import EVENT_SCHEMA
from journey.settings import Settings
from journey.stores.prediction_log import (
    ATTRIBUTION_SCHEMA,
    PREDICTION_SCHEMA,
    ParquetSink,
    PredictionLog,
    PredictionRecord,
    attribute_purchases,
    label_predictions,
    open_prediction_log,
    read_predictions,
)

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
EP = "predict_purchase"
DAY_S = 86_400.0


def record(i: int, *, at: datetime = T0, user: int | None = None, **overrides: object) -> PredictionRecord:
    values: dict[str, object] = {
        "request_id": f"r{i}",
        "time": at,
        "endpoint": EP,
        "user_id": i if user is None else user,
        "variant": "control",
        "model_version": 1,
        "score": 0.5,
        "session_id": f"s{i}",
        "experiment": "exp",
        **overrides,
    }
    return PredictionRecord(**values)  # type: ignore[arg-type]


class MemorySink:
    """A sink that keeps batches, optionally blocking until released or failing the first writes."""

    location = "memory"

    def __init__(self, *, fail_first: int = 0, block: threading.Event | None = None) -> None:
        self.batches: list[pa.Table] = []
        self.fail_first = fail_first
        self.block = block
        self.closed = False

    def write(self, table: pa.Table) -> None:
        if self.block is not None:
            self.block.wait(10)
        if self.fail_first:
            self.fail_first -= 1
            raise ServiceUnavailableError("store down")
        self.batches.append(table)

    def read(self, **_filters: object) -> pa.Table:
        return pa.concat_tables(self.batches) if self.batches else PREDICTION_SCHEMA.empty_table()

    def close(self) -> None:
        self.closed = True

    @property
    def rows(self) -> int:
        return sum(batch.num_rows for batch in self.batches)


def wait_for(condition: object, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def canonical_purchases(rows: list[tuple[int, datetime]]) -> pa.Table:
    return pa.table(
        {
            "event_id": [f"e{i}" for i in range(len(rows))],
            "user_id": [user for user, _ in rows],
            "session_id": ["s"] * len(rows),
            "item_id": [1] * len(rows),
            "event_type": ["purchase"] * len(rows),
            "event_timestamp": [at for _, at in rows],
            "price": [1.0] * len(rows),
            "category_id": [1] * len(rows),
        },
        schema=EVENT_SCHEMA,
    )


# ---------------------------------------------------------------------------------------------------- the appender


def test_record_fields_are_the_columns_of_the_schema() -> None:
    assert {f.name for f in fields(PredictionRecord)} == set(PREDICTION_SCHEMA.names)


def test_flush_writes_appended_records_to_a_day_partition_and_reads_them_back(settings: Settings) -> None:
    with open_prediction_log(settings) as log:
        assert all(log.append(record(i)) for i in range(3))
        assert log.flush()
        files = sorted((settings.prediction_log_dir / "date=2026-11-20").glob("part-*.parquet"))
        assert len(files) == 1 and log.stats.written == 3 and log.stats.pending == 0
    table = read_predictions(settings)
    assert table.schema == PREDICTION_SCHEMA and sorted(table["request_id"].to_pylist()) == ["r0", "r1", "r2"]
    assert table["time"][0].as_py() == T0


def test_records_of_two_utc_days_go_to_two_partitions(settings: Settings) -> None:
    with open_prediction_log(settings) as log:
        log.append(record(1, at=datetime(2026, 11, 20, 23, 59, tzinfo=UTC)))
        log.append(record(2, at=datetime(2026, 11, 21, 0, 1, tzinfo=UTC)))
    days = sorted(p.name for p in settings.prediction_log_dir.iterdir())
    assert days == ["date=2026-11-20", "date=2026-11-21"]


def test_read_filters_by_experiment_endpoint_and_time(settings: Settings) -> None:
    with open_prediction_log(settings) as log:
        log.append(record(1, experiment="a"))
        log.append(record(2, experiment="b"))
        log.append(record(3, experiment="a", at=T0 + timedelta(days=2)))
        log.append(record(4, experiment="a", endpoint="predict_next_action"))
    assert sorted(read_predictions(settings, experiment="a", endpoint=EP)["request_id"].to_pylist()) == ["r1", "r3"]
    later = read_predictions(settings, since=T0 + timedelta(days=1), until=T0 + timedelta(days=3))
    assert later["request_id"].to_pylist() == ["r3"]


def test_reading_a_log_never_written_is_empty(settings: Settings) -> None:
    table = read_predictions(settings)
    assert table.num_rows == 0 and table.schema == PREDICTION_SCHEMA


def test_a_full_batch_is_written_without_waiting_for_the_interval() -> None:
    sink = MemorySink()
    log = PredictionLog(sink, batch_size=10, flush_interval_s=3600)
    for i in range(10):
        log.append(record(i))
    assert wait_for(lambda: sink.rows == 10)
    log.close()


def test_records_are_written_after_the_flush_interval_without_a_full_batch() -> None:
    sink = MemorySink()
    log = PredictionLog(sink, batch_size=1000, flush_interval_s=0.1)
    log.append(record(1))
    assert wait_for(lambda: sink.rows == 1, timeout_s=3)
    log.close()


def test_close_writes_what_is_pending_releases_the_sink_and_drops_later_appends() -> None:
    sink = MemorySink()
    log = PredictionLog(sink, batch_size=1000, flush_interval_s=3600)
    log.append(record(1))
    log.close()
    assert sink.rows == 1 and sink.closed
    assert log.append(record(2)) is False and log.stats.dropped == 1
    log.close()  # idempotent


def test_a_full_queue_drops_and_counts_without_blocking_the_caller() -> None:
    release = threading.Event()
    sink = MemorySink(block=release)
    log = PredictionLog(sink, batch_size=1, flush_interval_s=0.01, max_queue=5)
    log.append(record(0))
    assert wait_for(lambda: log.stats.pending == 1 and not log._buffer)  # the writer holds record 0, blocked
    started = time.perf_counter()
    accepted = [log.append(record(i)) for i in range(1, 101)]
    elapsed = time.perf_counter() - started
    assert accepted.count(True) == 5 and log.stats.dropped == 95
    assert elapsed < 0.5  # 100 appends against a stuck store: no waiting
    release.set()
    log.close()
    assert sink.rows == 6 and log.stats.written == 6


def test_a_failed_write_is_counted_and_the_writer_keeps_going(caplog: pytest.LogCaptureFixture) -> None:
    sink = MemorySink(fail_first=1)
    log = PredictionLog(sink, batch_size=1000, flush_interval_s=3600)
    log.append(record(1))
    log.flush()
    log.append(record(2))
    log.flush()
    log.close()
    assert (log.stats.failed, log.stats.written, sink.rows) == (1, 1, 1)
    assert any("write failed" in r.getMessage() for r in caplog.records)


def test_a_bad_record_is_left_out_and_the_rest_of_its_batch_written() -> None:
    sink = MemorySink()
    log = PredictionLog(sink, batch_size=1000, flush_interval_s=3600)
    log.append(record(1))
    log.append(record(2, user="not a number"))  # type: ignore[arg-type]
    log.append(record(3, request_id=None))
    log.append(record(4))
    log.close()
    assert sink.batches[0]["request_id"].to_pylist() == ["r1", "r4"]
    assert (log.stats.written, log.stats.failed) == (2, 2)


def test_appends_from_many_threads_are_all_written_once() -> None:
    sink = MemorySink()
    log = PredictionLog(sink, batch_size=500, flush_interval_s=0.05)

    def produce(thread: int) -> None:
        for i in range(2_000):
            log.append(record(thread * 10_000 + i))

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    ids = [rid for batch in sink.batches for rid in batch["request_id"].to_pylist()]
    assert len(ids) == len(set(ids)) == 16_000 and log.stats.dropped == 0


def test_invalid_log_parameters_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        PredictionLog(MemorySink(), batch_size=0)


def test_a_parquet_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "log")
    sink.write(pa.table({name: [getattr(record(1), name)] for name in PREDICTION_SCHEMA.names}, PREDICTION_SCHEMA))
    assert [p.name.startswith("part-") for p in (tmp_path / "log" / "date=2026-11-20").iterdir()] == [True]


# -------------------------------------------------------------------------------------------------------- outcomes


def predictions(records: list[PredictionRecord]) -> pa.Table:
    return pa.table({name: [getattr(r, name) for r in records] for name in PREDICTION_SCHEMA.names}, PREDICTION_SCHEMA)


def test_a_prediction_converts_when_its_user_buys_within_the_window_after_it() -> None:
    logged = predictions(
        [
            record(1, user=1),  # buys 1 h later: converted
            record(2, user=2),  # buys 25 h later: outside the 24 h window
            record(3, user=3),  # bought 1 h before the prediction only
            record(4, user=4, at=T0 + timedelta(hours=2)),  # never buys
            record(5, user=1, at=T0 + timedelta(hours=3)),  # user 1 again, after the purchase: not converted
        ]
    )
    purchases = canonical_purchases(
        [(1, T0 + timedelta(hours=1)), (2, T0 + timedelta(hours=25)), (3, T0 - timedelta(hours=1))]
    )
    labelled = label_predictions(logged, purchases, DAY_S)
    assert labelled["request_id"].to_pylist() == ["r1", "r2", "r3", "r4", "r5"]  # order kept
    assert labelled["converted"].to_pylist() == [True, False, False, False, False]
    assert labelled["purchase_time"].to_pylist()[0] == T0 + timedelta(hours=1)


def test_a_purchase_at_the_same_instant_as_the_prediction_counts() -> None:
    labelled = label_predictions(predictions([record(1, user=1)]), canonical_purchases([(1, T0)]), DAY_S)
    assert labelled["converted"].to_pylist() == [True]


def test_shadow_predictions_are_labelled_too() -> None:
    logged = predictions([record(1, user=1), record(2, user=1, shadow=True, model_version=2)])
    labelled = label_predictions(logged, canonical_purchases([(1, T0 + timedelta(minutes=5))]), DAY_S)
    assert labelled["converted"].to_pylist() == [True, True]


def test_only_purchases_count_as_outcomes() -> None:
    events = canonical_purchases([(1, T0 + timedelta(minutes=5))])
    events = events.set_column(events.schema.get_field_index("event_type"), "event_type", pa.array(["view"]))
    labelled = label_predictions(predictions([record(1, user=1)]), events, DAY_S)
    assert labelled["converted"].to_pylist() == [False]


def test_each_purchase_is_attributed_to_the_newest_served_prediction_before_it() -> None:
    logged = predictions(
        [
            record(1, user=1, variant="control"),
            record(2, user=1, variant="candidate", model_version=2, at=T0 + timedelta(hours=1)),
            record(3, user=1, variant="shadow", shadow=True, model_version=3, at=T0 + timedelta(hours=1, minutes=30)),
            record(4, user=2),
        ]
    )
    purchases = canonical_purchases(
        [(1, T0 + timedelta(hours=2)), (2, T0 + timedelta(hours=30)), (9, T0 + timedelta(hours=1))]
    )
    attributed = attribute_purchases(logged, purchases, DAY_S)
    assert attributed.schema == ATTRIBUTION_SCHEMA
    assert attributed.select(["user_id", "request_id", "variant", "model_version"]).to_pylist() == [
        {"user_id": 1, "request_id": "r2", "variant": "candidate", "model_version": 2}
    ]


def test_outcome_joins_of_empty_inputs_are_empty() -> None:
    empty = PREDICTION_SCHEMA.empty_table()
    assert label_predictions(empty, canonical_purchases([]), DAY_S).num_rows == 0
    assert attribute_purchases(predictions([record(1)]), canonical_purchases([]), DAY_S).num_rows == 0


def test_a_non_positive_window_is_refused_naming_the_setting() -> None:
    with pytest.raises(InvalidInputError) as raised:
        label_predictions(predictions([record(1)]), canonical_purchases([]), 0)
    assert raised.value.field == "attribution_window_s"


def test_the_attribution_window_defaults_to_24_hours_and_reads_the_environment(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.attribution_window_s == DAY_S
    monkeypatch.setenv("JOURNEY_ATTRIBUTION_WINDOW_S", "3600")
    assert Settings().attribution_window_s == 3600.0
