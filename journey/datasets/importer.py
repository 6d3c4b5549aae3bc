"""Read a source file in any `SourceFormat`, validate it, sessionise it and return canonical events + rejects.

One import is the main file plus the format's side files: events files add rows (purchases beside clicks, numbered
after the main file's rows in the report), lookups fill fields by key. Reading and parsing live in reading.py,
parsing.py and candidate.py; this module puts the files together and runs validation and sessionisation once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from journey.datasets.candidate import Candidate, build_candidate, read_mapped
from journey.datasets.formats import SourceFormat
from journey.datasets.lookups import apply_lookup, load_lookup
from journey.datasets.reading import Read
from journey.errors import BadEventError, InvalidInputError
from journey.events import (
    REJECTS_SCHEMA,
    RejectReason,
    canonicalize,
    counts_by_reason,
    first_error,
    validate_events,
)
from journey.sessions import sessionise

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportResult:
    """Canonical events of one source plus everything that was rejected on the way."""

    events: pa.Table
    rejects: pa.Table
    rows_in: int
    source: str
    format: str
    anonymous_users: str = "reject"
    anonymous_rows: int = 0  # source rows without a user id that took one from their session
    side_files: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rows_rejected(self) -> int:
        return int(pc.count_distinct(self.rejects["row"]).as_py()) if self.rejects.num_rows else 0

    def counts_by_reason(self) -> dict[str, int]:
        return counts_by_reason(self.rejects)

    def first_error(self) -> BadEventError | None:
        return first_error(self.rejects)

    def provenance(self) -> dict[str, Any]:
        """What the manifest records about how the rows were read: the anonymous-user choice, the side files."""
        recorded: dict[str, Any] = {"anonymous_users": self.anonymous_users, "anonymous_rows": self.anonymous_rows}
        if self.side_files:
            recorded["side_files"] = self.side_files
        return recorded


def _malformed_rejects(read: Read, row_offset: int) -> pa.Table:
    if not read.malformed:
        return REJECTS_SCHEMA.empty_table()
    rows, texts = zip(*read.malformed, strict=True)
    return pa.table(
        {
            "row": [row + row_offset for row in rows],
            "field": ["<line>"] * len(rows),
            "value": list(texts),
            "reason": [RejectReason.MALFORMED_ROW.value] * len(rows),
        },
        schema=REJECTS_SCHEMA,
    )


def _prefix_ids(rejects: pa.Table, prefix: str) -> pa.Table:
    """Show content-derived ids in rejects exactly as they would have been stored (see events.hex_ids)."""
    if not prefix or rejects.num_rows == 0:
        return rejects
    fields, values = rejects["field"].to_pylist(), rejects["value"].to_pylist()
    shown = [f"{prefix}{int(v):016x}" if f == "event_id" else v for f, v in zip(fields, values, strict=True)]
    return rejects.set_column(rejects.schema.get_field_index("value"), "value", pa.array(shown, pa.string()))


def _assign_sessions(valid: pa.Table, timeout_s: int) -> pa.Table:
    users = valid["user_id"].to_numpy()
    ts = pc.cast(valid["event_timestamp"], pa.int64()).to_numpy()
    sessions = sessionise(users, ts, timeout_s * 1_000_000)
    return valid.set_column(valid.schema.get_field_index("session_id"), "session_id", sessions.session_ids())


def side_path(source: Path, path: Path) -> Path:
    """A side file's path: as written when absolute, else beside the source file."""
    path = path.expanduser()
    return path if path.is_absolute() else source.parent / path


@dataclass
class _Sources:
    """The files of one import read so far: their candidates, malformed lines and what the manifest records."""

    candidates: list[Candidate] = field(default_factory=list)
    malformed: list[pa.Table] = field(default_factory=list)
    side_files: list[dict[str, Any]] = field(default_factory=list)
    rows_in: int = 0

    def add(self, read: Read, candidate: Candidate) -> None:
        self.candidates.append(candidate)
        self.malformed.append(_malformed_rejects(read, self.rows_in))
        self.rows_in += read.rows_in

    def combined(self) -> tuple[pa.Table, dict[str, pa.Array], np.ndarray]:
        """One candidate table for validation; source text of a field is null where a file had none."""
        if len(self.candidates) == 1:
            only = self.candidates[0]
            return only.table, only.raw, only.rows
        table = pa.concat_tables([c.table for c in self.candidates])
        raw = {
            name: pa.concat_arrays(
                [
                    pc.cast(c.raw[name], pa.string()) if name in c.raw else pa.nulls(c.table.num_rows, pa.string())
                    for c in self.candidates
                ]
            )
            for name in sorted({name for c in self.candidates for name in c.raw})
        }
        return table, raw, np.concatenate([c.rows for c in self.candidates])


def _read_sources(path: Path, fmt: SourceFormat, step: Callable[[str], None]) -> _Sources:
    sources = _Sources()
    read = read_mapped(path, fmt)
    sources.add(read, build_candidate(read, fmt))
    for salt, side in enumerate(fmt.events_files, start=1):
        where = side_path(path, side.path)
        step(f"read {where.name}")
        read = read_mapped(where, side)
        first_row = sources.rows_in + 1
        sources.add(read, build_candidate(read, side, key_salt=salt, row_offset=sources.rows_in))
        rows = {"rows_in": read.rows_in, "first_row": first_row, "last_row": sources.rows_in}
        sources.side_files.append({"kind": "events", "path": str(where), **rows})
    return sources


def _apply_lookups(
    table: pa.Table, raw: dict[str, pa.Array], path: Path, fmt: SourceFormat, sources: _Sources
) -> pa.Table:
    for lookup in fmt.lookups:
        loaded = load_lookup(side_path(path, lookup.path), lookup)
        table, matched = apply_lookup(table, raw, loaded, next(iter(lookup.join)))
        sources.side_files.append({**loaded.report, "rows_matched": matched})
    return table


def import_events(
    path: Path,
    fmt: SourceFormat,
    *,
    session_timeout_s: int,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> ImportResult:
    """Parse + validate + sessionise one source (and its side files). Never raises for bad rows: see `rejects`."""
    step = progress or (lambda _name: None)
    step("read")
    sources = _read_sources(path, fmt, step)
    step("validate")
    table, raw, rows = sources.combined()
    table = _apply_lookups(table, raw, path, fmt, sources)
    result = validate_events(table, now=now, source_rows=rows, raw=raw, check_session=fmt.has_sessions)
    valid = result.valid
    if not fmt.has_sessions:
        step("sessionise")
        valid = _assign_sessions(valid, session_timeout_s)
    prefix = "" if fmt.has_event_ids else f"{fmt.name}-"
    events = canonicalize(valid, event_id_prefix=prefix)
    rejects = _sorted_rejects([*sources.malformed, _prefix_ids(result.rejects, prefix)])
    log.info(
        "imported events",
        extra={
            "source": str(path),
            "rows_in": sources.rows_in,
            "rows_ok": events.num_rows,
            "rows_rejected": rejects.num_rows,
        },
    )
    return ImportResult(
        events=events,
        rejects=rejects,
        rows_in=sources.rows_in,
        source=str(path),
        format=fmt.name,
        anonymous_users=fmt.anonymous_users,
        anonymous_rows=sum(c.anonymous_rows for c in sources.candidates),
        side_files=sources.side_files,
    )


def _sorted_rejects(parts: Sequence[pa.Table]) -> pa.Table:
    return pa.concat_tables(parts).sort_by("row")


def nothing_imported(result: ImportResult) -> InvalidInputError:
    """The refusal for an import without a single valid event: the reasons summarised, a hint where one fits."""
    if result.rows_in == 0:
        return InvalidInputError(f"{result.source} holds no rows: nothing stored", field="source", value=result.source)
    reasons = result.counts_by_reason()
    summary = ", ".join(f"{reason} {count:,}" for reason, count in reasons.items())
    where = f"{result.source} and its side files" if result.side_files else result.source
    message = f"every one of the {result.rows_in:,} rows of {where} was rejected ({summary})"
    first = result.first_error()
    if first is not None:
        message += f"; first: {first}"
    if set(reasons) == {RejectReason.MALFORMED_ROW.value}:
        message += "; no line has the mapping's number of fields: check its delimiter and header"
    missing_users = pc.and_(
        pc.equal(result.rejects["field"], "user_id"), pc.equal(result.rejects["reason"], RejectReason.MISSING_ID.value)
    )
    if result.anonymous_users == "reject" and pc.any(missing_users).as_py():
        message += "; for rows without a user id, a mapping can set `anonymous_users: session` or `anonymous_id`"
    return InvalidInputError(message + ". Nothing was stored.", field="source", value=result.source)
