"""Lookup side files: values joined onto the events by key (an item's category from a product file).

A lookup fills only cells the events leave empty: a value the event file has wins, and one it has but that does not
parse is still reported. Keys that repeat take their first row; rows without a usable key or value are skipped. Both
are counted in the report that the manifest records.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from journey.datasets.candidate import NUMERIC_FIELDS
from journey.datasets.mapping import LookupFile
from journey.datasets.parsing import parse_numeric
from journey.datasets.reading import Layout, read_file


@dataclass(frozen=True)
class LookupTable:
    """Distinct keys (first row wins) and, per canonical field, the value of each key."""

    keys: pa.Array
    values: dict[str, pa.Array]
    report: dict[str, Any]


def load_lookup(path: Path, lookup: LookupFile) -> LookupTable:
    """Read a lookup file as text and keep the rows with a numeric key and at least one numeric value."""
    needed = lookup.source_columns()
    layout = Layout(lookup.delimiter, lookup.header, lookup.column_names)
    read = read_file(path, layout, [dict.fromkeys(needed, pa.string())], needed)
    ((field, key_column),) = lookup.join.items()
    keys, _ = parse_numeric(read.table[key_column], pa.int64())
    values = {name: parse_numeric(read.table[col], NUMERIC_FIELDS[name])[0] for name, col in lookup.columns.items()}
    usable = pc.and_(keys.is_valid(), functools.reduce(pc.or_, [arr.is_valid() for arr in values.values()]))
    key_numbers = np.asarray(pc.fill_null(keys, 0).to_numpy(zero_copy_only=False))
    rows = np.flatnonzero(np.asarray(usable.to_numpy(zero_copy_only=False)))
    distinct, first = np.unique(key_numbers[rows], return_index=True)
    take = pa.array(rows[first])
    report = {
        "kind": "lookup",
        "path": str(path),
        "join": field,
        "fields": sorted(lookup.columns),
        "rows_in": read.rows_in,
        "keys": int(distinct.size),
        "rows_skipped": read.rows_in - int(rows.size),
        "repeated_keys": int(rows.size - distinct.size),
    }
    return LookupTable(pa.array(distinct, pa.int64()), {k: v.take(take) for k, v in values.items()}, report)


def apply_lookup(table: pa.Table, raw: Mapping[str, pa.Array], lookup: LookupTable, join: str) -> tuple[pa.Table, int]:
    """Fill the empty cells of the lookup's fields from the row of the event's key; also: how many rows matched."""
    position = pc.index_in(table[join], value_set=lookup.keys)
    for name, values in lookup.values.items():
        own = table[name].combine_chunks()
        empty = own.is_null()
        if name in raw:  # text the event file had there but that did not parse: reported, not replaced
            text = pc.fill_null(pc.utf8_trim_whitespace(pc.cast(raw[name], pa.string())), "")
            empty = pc.and_(empty, pc.equal(pc.utf8_length(text), 0))
        filled = pc.if_else(empty, values.take(position), own)
        table = table.set_column(table.schema.get_field_index(name), name, filled)
    return table, len(position) - position.null_count
