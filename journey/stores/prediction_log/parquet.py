"""Local profile sink: `<data_dir>/prediction_log/date=YYYY-MM-DD/part-<time>-<id>.parquet`, one file per flush and
UTC day, read back with day-partition pruning."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.parquet as pq

from journey.errors import JourneyError
from journey.stores.prediction_log.schema import PREDICTION_SCHEMA


class ParquetSink:
    """Local profile: one Parquet file per flush and UTC day, written to a hidden temp name and renamed into place,
    so a reader (the A/B report) never sees a half-written file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return str(self.root)

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        days = pc.strftime(table["time"], format="%Y-%m-%d")
        stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"
        try:
            for day in pc.unique(days).to_pylist():
                part = table.filter(pc.equal(days, day))
                folder = self.root / f"date={day}"
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / f".part-{stamp}.parquet.tmp"
                pq.write_table(part, tmp)
                tmp.replace(folder / f"part-{stamp}.parquet")
        except OSError as exc:
            raise JourneyError(f"cannot write the prediction log under {self.root}: {exc}") from exc

    def read(
        self, *, experiment: str | None, endpoint: str | None, since: datetime | None, until: datetime | None
    ) -> pa.Table:
        if not self.root.is_dir():
            return PREDICTION_SCHEMA.empty_table()
        partitioning = pds.partitioning(pa.schema([("date", pa.string())]), flavor="hive")
        dataset = pds.dataset(self.root, format="parquet", partitioning=partitioning, schema=_with_date_partition())
        condition = _arrow_filter(experiment, endpoint, since, until)
        table = dataset.to_table(columns=list(PREDICTION_SCHEMA.names), filter=condition)
        return table.cast(PREDICTION_SCHEMA)

    def close(self) -> None:
        return None


def _with_date_partition() -> pa.Schema:
    return PREDICTION_SCHEMA.append(pa.field("date", pa.string()))


def _arrow_filter(
    experiment: str | None, endpoint: str | None, since: datetime | None, until: datetime | None
) -> pc.Expression | None:
    """Row filter, plus day-partition pruning for the time bounds."""
    parts: list[pc.Expression] = []
    if experiment is not None:
        parts.append(pc.field("experiment") == experiment)
    if endpoint is not None:
        parts.append(pc.field("endpoint") == endpoint)
    if since is not None:
        start = _utc(since)
        parts += [
            pc.field("date") >= f"{start:%Y-%m-%d}",
            pc.field("time") >= pa.scalar(start, PREDICTION_SCHEMA.field("time").type),
        ]
    if until is not None:
        end = _utc(until)
        parts += [
            pc.field("date") <= f"{end:%Y-%m-%d}",
            pc.field("time") < pa.scalar(end, PREDICTION_SCHEMA.field("time").type),
        ]
    if not parts:
        return None
    condition = parts[0]
    for part in parts[1:]:
        condition = condition & part
    return condition


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
