"""Local profile: one Parquet file per view, replaced atomically, writers of a view serialised by a lock file."""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from journey.errors import InvalidInputError, NotFoundError
from journey.stores.offline.backend import VIEW_NAME, WriteMode


class ParquetTables:
    """`<root>/<view>.parquet`; see the package docstring for why append is fine for small increments only."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, view: str) -> Path:
        return self.root / f"{view}.parquet"

    def location(self, view: str) -> str:
        return str(self.path(view))

    def exists(self, view: str) -> bool:
        return self.path(view).is_file()

    def read(self, view: str) -> pa.Table:
        path = self.path(view)
        if not path.is_file():
            raise NotFoundError(f"offline table {view!r} not found at {path}")
        return pq.read_table(path)

    def write(self, view: str, table: pa.Table, mode: WriteMode, index_columns: Sequence[str]) -> str:
        path = self.path(view)
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock(view):
            if mode == "append" and path.is_file():
                table = _concat_like(pq.read_table(path), table, str(path))
            _atomic_write_parquet(table, path)
        return str(path)

    def drop_all(self) -> None:
        if not self.root.is_dir():
            return
        for path in self.root.iterdir():
            stem = path.name.removesuffix(".parquet")
            if path.is_file() and path.name.endswith(".parquet") and VIEW_NAME.match(stem):
                path.unlink()

    @contextlib.contextmanager
    def _lock(self, view: str) -> Iterator[None]:
        """One writer per view at a time on this host (append is read-modify-write)."""
        with (self.root / f".{view}.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _atomic_write_parquet(table: pa.Table, path: Path) -> None:
    """Write beside the target, flush to disk, then rename over it: the target is either old or new, never half."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("wb") as handle:
            pq.write_table(table, handle, compression="zstd")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)  # os.replace: atomic on one filesystem
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _concat_like(old: pa.Table, new: pa.Table, where: str) -> pa.Table:
    """Append `new` to `old` in old's column order and types; different column names are an input error."""
    if set(old.column_names) != set(new.column_names):
        raise InvalidInputError(
            f"cannot append to {where}: columns {sorted(new.column_names)} differ from the stored "
            f"{sorted(old.column_names)}",
            field="table",
        )
    try:
        aligned = new.select(old.column_names).cast(old.schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInputError(f"cannot append to {where}: {exc}", field="table") from exc
    return pa.concat_tables([old, aligned])
