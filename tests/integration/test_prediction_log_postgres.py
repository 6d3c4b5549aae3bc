"""The prediction log on the prod profile: a PostgreSQL table in the offline schema, created on first write."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from journey.errors import ServiceUnavailableError
from journey.settings import Settings
from journey.stores.prediction_log import (
    PREDICTION_SCHEMA,
    TABLE,
    PostgresSink,
    PredictionLog,
    PredictionRecord,
    open_prediction_log,
    read_predictions,
    records_to_table,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)


def record(i: int, **overrides: object) -> PredictionRecord:
    values: dict[str, object] = {
        "request_id": f"r{i}",
        "time": T0 + timedelta(minutes=i),
        "endpoint": "predict_purchase",
        "user_id": i,
        "variant": "control",
        "model_version": 1,
        "score": i / 100,
        "experiment": "exp",
        "feature_age_s": 1.5,
        **overrides,
    }
    return PredictionRecord(**values)  # type: ignore[arg-type]


@pytest.fixture
def engine(postgres_settings: Settings) -> Iterator[Engine]:
    plain = create_engine(postgres_settings.postgres_dsn)
    yield plain
    plain.dispose()


def test_the_log_creates_its_table_in_the_offline_schema_and_reads_back_what_it_wrote(
    postgres_settings: Settings, engine: Engine
) -> None:
    with open_prediction_log(postgres_settings) as log:
        for i in range(5):
            log.append(record(i, shadow=i == 4, model_version=2 if i == 4 else 1))
        assert log.flush() and log.stats.written == 5
        assert log.location.endswith(f"({postgres_settings.offline_schema}.{TABLE})")
    with engine.connect() as connection:
        indexes = connection.execute(
            text("SELECT indexname FROM pg_indexes WHERE schemaname = :s AND tablename = :t"),
            {"s": postgres_settings.offline_schema, "t": TABLE},
        ).scalars()
        assert {f"ix_{TABLE}_experiment_time", f"ix_{TABLE}_user_id_time"} <= set(indexes)
    table = read_predictions(postgres_settings, experiment="exp")
    assert table.schema == PREDICTION_SCHEMA and table.num_rows == 5
    assert table.to_pylist()[4] == records_to_table([record(4, shadow=True, model_version=2)]).to_pylist()[0]
    later = read_predictions(postgres_settings, since=T0 + timedelta(minutes=3), until=T0 + timedelta(minutes=4))
    assert later["request_id"].to_pylist() == ["r3"]


def test_workers_starting_together_create_the_table_once(postgres_settings: Settings) -> None:
    def write(worker: int) -> int:
        with PredictionLog(PostgresSink(postgres_settings.postgres_dsn, postgres_settings.offline_schema)) as log:
            for i in range(50):
                log.append(record(worker * 1000 + i))
            log.flush()
            return log.stats.written

    with ThreadPoolExecutor(max_workers=3) as pool:
        assert list(pool.map(write, range(3))) == [50, 50, 50]
    assert read_predictions(postgres_settings).num_rows == 150


def test_an_unreachable_database_costs_log_lines_never_the_caller(postgres_settings: Settings) -> None:
    sink = PostgresSink("postgresql+psycopg://postgres:secret@127.0.0.1:1/test", "journey")
    with pytest.raises(ServiceUnavailableError, match=r"127\.0\.0\.1:1") as raised:
        sink.write(records_to_table([record(1)]))
    assert "secret" not in str(raised.value)
    with PredictionLog(sink, flush_interval_s=0.05) as log:
        assert log.append(record(2)) is True
        log.flush()
        assert log.stats.failed == 1 and log.stats.written == 0
