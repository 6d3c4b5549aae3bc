"""Canonical event datasets on disk: Parquet partitioned by date, a rejects file and a JSON manifest.

    <data_dir>/datasets/<name>/
        events/date=YYYY-MM-DD/part-<import id>.parquet   canonical events (EVENT_SCHEMA)
        rejects.parquet                                   every rejected row with field, value and reason
        manifest.json                                     counts, time range, rejects by reason, sources
        truth/                                            ground truth of synthetic datasets (optional)

Writes are atomic: a dataset is assembled in a hidden sibling folder and swapped in with renames, so a crash or a
bad import never leaves a half-written dataset, and an existing one is only replaced when asked.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.parquet as pq

from journey.errors import ConflictError, InvalidInputError, NotFoundError
from journey.events import EVENT_SCHEMA, REJECTS_SCHEMA, duplicate_mask
from journey.sessions import stable_argsort

MANIFEST_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_US_PER_DAY = 86_400_000_000


class WriteMode(StrEnum):
    ERROR = "error"  # refuse to touch an existing dataset
    REPLACE = "replace"  # swap the whole dataset atomically
    APPEND = "append"  # add new events; ids already stored are duplicates: left out, counted (rows_duplicate)


@dataclass(frozen=True)
class Manifest:
    """What a dataset holds; written next to the data so `journey data stats` needs no scan."""

    data: dict[str, Any]

    @property
    def rows(self) -> int:
        return int(self.data["rows"])

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=False)


def validate_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidInputError(
            f"invalid dataset name {name!r}: use letters, digits, '_', '-', '.' (max 64)",
            field="dataset",
            value=name,
        )
    return name


class DatasetStore:
    """All datasets under one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / validate_name(name)

    def exists(self, name: str) -> bool:
        return (self.path(name) / "manifest.json").exists()

    def names(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "manifest.json").exists())

    def manifest(self, name: str) -> Manifest:
        path = self.path(name) / "manifest.json"
        if not path.exists():
            known = ", ".join(self.names()) or "none"
            raise NotFoundError(f"dataset {name!r} not found under {self.root} (known: {known})")
        return Manifest(json.loads(path.read_text(encoding="utf-8")))

    def events(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """All events of a dataset with exactly the canonical schema (partition column dropped)."""
        self.manifest(name)  # raises NotFoundError with the known names
        dataset = pds.dataset(self.path(name) / "events", format="parquet", schema=EVENT_SCHEMA, partitioning=None)
        return dataset.to_table(columns=columns)

    def rejects(self, name: str) -> pa.Table:
        self.manifest(name)
        path = self.path(name) / "rejects.parquet"
        return pq.read_table(path) if path.exists() else REJECTS_SCHEMA.empty_table()

    def check_writable(self, name: str, mode: WriteMode) -> None:
        """Fail before a long import/generation, not after it."""
        if mode is WriteMode.ERROR and self.exists(name):
            raise ConflictError(f"dataset {name!r} exists at {self.path(name)}; pass --replace or --append")

    def write(
        self,
        name: str,
        events: pa.Table,
        *,
        rejects: pa.Table | None = None,
        source: Mapping[str, Any],
        mode: WriteMode = WriteMode.ERROR,
        extra_tables: Mapping[str, pa.Table] | None = None,
    ) -> Manifest:
        """Store events (+ rejects, + extra tables such as ground truth) and return the new manifest."""
        target = self.path(name)
        self.check_writable(name, mode)
        exists = self.exists(name)
        if events.schema != EVENT_SCHEMA:
            raise InvalidInputError("events do not match the canonical schema", field="events")
        rejects = rejects if rejects is not None else REJECTS_SCHEMA.empty_table()
        import_id = uuid.uuid4().hex[:12]
        new_rejected = int(pc.count_distinct(rejects["row"]).as_py()) if rejects.num_rows else 0
        sources: list[dict[str, Any]] = []
        duplicates = 0
        if exists and mode is WriteMode.APPEND:
            before = events.num_rows
            events = _drop_stored_ids(self.events(name, ["event_id"]), events)
            duplicates = before - events.num_rows
            old = self.manifest(name).data
            sources = list(old.get("sources", []))
            rejects = pa.concat_tables([self.rejects(name), rejects])
        sources.append(
            {
                **source,
                "import_id": import_id,
                "imported_at": datetime.now(UTC).isoformat(),
                "rows_in": int(source.get("rows_in", events.num_rows)),
                "rows_stored": events.num_rows,
                "rows_rejected": new_rejected,
                "rows_duplicate": duplicates,  # ids stored by an earlier import: acknowledged, nothing changed
            }
        )
        with _staging(target, keep_existing=exists and mode is WriteMode.APPEND) as stage:
            _write_partitions(events, stage / "events", import_id)
            pq.write_table(rejects, stage / "rejects.parquet")
            for table_name, table in (extra_tables or {}).items():
                (stage / "truth").mkdir(exist_ok=True)
                pq.write_table(table, stage / "truth" / f"{table_name}.parquet")
            stored = pds.dataset(stage / "events", format="parquet", schema=EVENT_SCHEMA).to_table()
            files = len(list((stage / "events").glob("date=*/*.parquet")))
            manifest = Manifest(build_manifest(name, stored, rejects, sources, files=files))
            (stage / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
        return manifest


def _drop_stored_ids(stored: pa.Table, events: pa.Table) -> pa.Table:
    """Exactly once, as `/events`: an event whose id is stored already is a duplicate of it (a re-run import, an
    overlapping file), left out and counted, not a bad row."""
    ids = pa.concat_arrays([stored["event_id"].combine_chunks(), events["event_id"].combine_chunks()])
    dup = duplicate_mask(ids)[stored.num_rows :]
    return events if not dup.any() else events.take(pa.array(np.flatnonzero(~dup)))


@contextmanager
def _staging(target: Path, *, keep_existing: bool) -> Iterator[Path]:
    """Build the new dataset beside the old one, then swap with renames (atomic on one filesystem)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = target.parent / f".{target.name}.staging-{uuid.uuid4().hex[:8]}"
    if keep_existing:
        shutil.copytree(target, stage)
        (stage / "manifest.json").unlink()
    else:
        stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    if target.exists():
        target.rename(old)
    stage.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _write_partitions(events: pa.Table, root: Path, import_id: str) -> list[Path]:
    """One Parquet file per UTC day, rows in time order within each day."""
    root.mkdir(parents=True, exist_ok=True)
    if events.num_rows == 0:
        return []
    ts = pc.cast(events["event_timestamp"], pa.int64()).to_numpy()
    order = stable_argsort(ts)
    ordered = events.take(pa.array(order))
    days = ts[order] // _US_PER_DAY
    bounds = np.flatnonzero(np.diff(days)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(days)]))
    files = []
    for start, end in zip(starts, ends, strict=True):
        day = datetime.fromtimestamp(int(days[start]) * 86_400, UTC).date().isoformat()
        folder = root / f"date={day}"
        folder.mkdir(exist_ok=True)
        path = folder / f"part-{import_id}.parquet"
        pq.write_table(ordered.slice(start, end - start), path, compression="zstd")
        files.append(path)
    return files


def build_manifest(
    name: str, events: pa.Table, rejects: pa.Table, sources: list[dict[str, Any]], *, files: int
) -> dict[str, Any]:
    """Counts a person checks first: rows by type, distinct users/items/sessions, time range, rejects by reason."""
    by_type = events.group_by("event_type").aggregate([("event_id", "count")])
    reasons = rejects.group_by("reason").aggregate([("row", "count")]) if rejects.num_rows else None
    ts = events["event_timestamp"]
    return {
        "manifest_version": MANIFEST_VERSION,
        "dataset": name,
        "rows": events.num_rows,
        "events_by_type": dict(
            sorted(zip(by_type["event_type"].to_pylist(), by_type["event_id_count"].to_pylist(), strict=True))
        ),
        "users": int(pc.count_distinct(events["user_id"]).as_py()),
        "items": int(pc.count_distinct(events["item_id"]).as_py()),
        "sessions": int(pc.count_distinct(events["session_id"]).as_py()),
        "time_range": {
            "start": pc.min(ts).as_py().isoformat() if events.num_rows else None,
            "end": pc.max(ts).as_py().isoformat() if events.num_rows else None,
        },
        "rejected_rows": sum(int(s.get("rows_rejected", 0)) for s in sources),
        "duplicate_rows": sum(int(s.get("rows_duplicate", 0)) for s in sources),
        "rejects_by_reason": {}
        if reasons is None
        else dict(sorted(zip(reasons["reason"].to_pylist(), reasons["row_count"].to_pylist(), strict=True))),
        "files": files,
        "sources": sources,
        "written_at": datetime.now(UTC).isoformat(),
    }
