"""Reading the columns a mapping names out of a CSV (any delimiter, optionally gzipped) or Parquet file.

The fast path reads typed columns straight from the file (pyarrow, multi-threaded). If a column does not convert, the
next attempt is read (e.g. epoch timestamps as fractions, then everything as text), so bad values are *reported*
with their row by the parsers instead of failing the load. Malformed CSV lines are kept with their line number. A
mapped column the file does not have is refused before any row is read, naming the columns the file does have.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.dataset as pds
import pyarrow.parquet as pq

from journey.errors import InvalidInputError, NotFoundError

log = logging.getLogger(__name__)

Types = Mapping[str, pa.DataType]
_LIKELY_DELIMITERS = (";", "\t", ",", "|")


@dataclass(frozen=True)
class Layout:
    """How a file is laid out: what separates fields, whether the first line names the columns."""

    delimiter: str = ","
    header: bool = True
    column_names: Sequence[str] | None = None


@dataclass
class Read:
    table: pa.Table  # the requested source columns, typed where possible
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (data row, text)
    rows: np.ndarray | None = None  # data row number per table row, when malformed rows were skipped

    @property
    def rows_in(self) -> int:
        return int(self.table.num_rows) + len(self.malformed)

    def source_rows(self) -> np.ndarray:
        """The 1-based data row of each table row."""
        return self.rows if self.rows is not None else np.arange(1, self.table.num_rows + 1, dtype=np.int64)


def read_file(path: Path, layout: Layout, attempts: Sequence[Types], needed: Mapping[str, str]) -> Read:
    """The `needed` columns (source column -> what it is for) of a file, typed by the first attempt that converts."""
    if not path.exists():
        raise NotFoundError(f"source file not found: {path}")
    if path.suffix == ".parquet" or path.is_dir():
        found = pds.dataset(path, format="parquet").schema.names
        _refuse_missing(path, needed, found, layout)
        return Read(pq.read_table(path, columns=sorted(needed)))
    for number, types in enumerate(attempts, start=1):
        try:
            return _read_csv(path, layout, types, needed)
        except pa.ArrowKeyError:  # include_columns names a column the header lacks
            _refuse_missing(path, needed, _header(path, layout), layout)
            raise
        except pa.ArrowInvalid as exc:
            if ("CSV parse error" in str(exc) and "column" not in str(exc).lower()) or number == len(attempts):
                raise InvalidInputError(f"{path}: not a readable CSV file: {exc}", field="source") from exc
            log.info("typed CSV read failed, reading again more leniently", extra={"error": str(exc)})
    raise AssertionError("unreachable: the last attempt returns or raises")


def _read_csv(path: Path, layout: Layout, types: Types, needed: Mapping[str, str]) -> Read:
    malformed: list[tuple[int, str]] = []

    def on_invalid(row: pcsv.InvalidRow) -> str:
        malformed.append((row.number if row.number is not None else -1, row.text))
        return "skip"

    read_opts = pcsv.ReadOptions(
        column_names=None if layout.header else list(layout.column_names or []),
        use_threads=True,
        block_size=16 << 20,
    )
    parse_opts = pcsv.ParseOptions(delimiter=layout.delimiter, invalid_row_handler=on_invalid)
    convert_opts = pcsv.ConvertOptions(
        column_types=dict(types),
        include_columns=sorted(needed),
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    table = pcsv.read_csv(path, read_options=read_opts, parse_options=parse_opts, convert_options=convert_opts)
    if not malformed:
        return Read(table)
    # line numbers are only known single-threaded; re-read that way so every reported row is exact
    malformed.clear()
    read_opts.use_threads = False
    table = pcsv.read_csv(path, read_options=read_opts, parse_options=parse_opts, convert_options=convert_opts)
    header_lines = 1 if layout.header else 0
    bad_lines = np.array([m[0] - header_lines for m in malformed], dtype=np.int64)
    all_rows = np.arange(1, table.num_rows + len(malformed) + 1, dtype=np.int64)
    return Read(
        table,
        malformed=[(int(r), t) for r, (_, t) in zip(bad_lines, malformed, strict=True)],
        rows=np.setdiff1d(all_rows, bad_lines),
    )


def _header(path: Path, layout: Layout) -> list[str]:
    """The column names of a CSV file, from its first block only."""
    try:
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=1 << 20),
            parse_options=pcsv.ParseOptions(delimiter=layout.delimiter),
        )
    except (pa.ArrowInvalid, OSError):
        return []
    names: list[str] = reader.schema.names
    reader.close()
    return names


def _refuse_missing(path: Path, needed: Mapping[str, str], found: Sequence[str], layout: Layout) -> None:
    """Name the mapped columns the file lacks, the ones it has, and the delimiter its header suggests."""
    missing = [f"{column!r} ({purpose})" for column, purpose in needed.items() if column not in found]
    if not missing:
        return
    message = f"{path} has no column {', '.join(missing)}; columns found: {list(found)}"
    hint = _delimiter_hint(found, layout.delimiter)
    if hint:
        message += f". {hint}"
    raise InvalidInputError(message, field="columns", value=list(found))


def _delimiter_hint(found: Sequence[str], delimiter: str) -> str | None:
    if len(found) != 1:
        return None
    for candidate in _LIKELY_DELIMITERS:
        if candidate != delimiter and candidate in found[0]:
            shown = "\\t" if candidate == "\t" else candidate
            return f'The header is one column holding {shown!r}: set `delimiter: "{shown}"` in the mapping'
    return None
