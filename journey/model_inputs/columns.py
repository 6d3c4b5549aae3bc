"""Reading feature columns, from a training frame or the online reader's dict of lists (None for an unknown
entity): numeric columns as a float32 matrix (`feature_matrix`), list columns flattened with each row's length.
Every problem names the column."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeAlias

import numpy as np
import pandas as pd

from journey.errors import InvalidInputError

Columns: TypeAlias = Mapping[str, Any] | pd.DataFrame

ITEMS: Final = "session_last_item_ids"
TYPES: Final = "session_last_event_types"
TIMES: Final = "session_last_event_ts"
CATEGORIES: Final = "session_last_category_ids"
NO_CATEGORY: Final = -1


def row_count(columns: Columns) -> int:
    if isinstance(columns, pd.DataFrame):
        return len(columns)
    return len(next(iter(columns.values()))) if columns else 0


def _column(columns: Columns, name: str) -> Any:
    if name not in columns:
        raise InvalidInputError(f"feature column {name!r} is missing", field=name)
    return columns[name]


def _numeric(columns: Columns, name: str, rows: int) -> np.ndarray:
    """One column as float64, None/NaN/pd.NA -> NaN; anything that is not a number names the column."""
    values = _column(columns, name)
    try:
        if isinstance(values, pd.Series):
            array = values.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            array = np.asarray(values, dtype=np.float64)  # None -> NaN
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"feature column {name!r} is not numeric: {exc}", field=name) from exc
    if array.shape != (rows,):
        raise InvalidInputError(
            f"feature column {name!r} has shape {array.shape}, expected ({rows},)", field=name, value=array.shape
        )
    return array


def feature_matrix(columns: Columns, feature_order: Sequence[str]) -> np.ndarray:
    """float32 [rows, len(feature_order)] in `feature_order`; a missing value is NaN, a missing column an error.

    `columns` is a training frame or the online reader's dict of lists (None for an unknown entity).
    """
    rows = row_count(columns)
    fast = _all_at_once(columns, feature_order, rows)
    if fast is not None:
        return fast
    out = np.empty((rows, len(feature_order)), dtype=np.float32)
    for j, name in enumerate(feature_order):  # column by column: the slow path that names what is wrong
        out[:, j] = _numeric(columns, name, rows)
    return out


def _all_at_once(columns: Columns, feature_order: Sequence[str], rows: int) -> np.ndarray | None:
    """The matrix in one numpy conversion (a request's row in microseconds), or None if anything is off."""
    if any(name not in columns for name in feature_order):
        return None
    try:
        if isinstance(columns, pd.DataFrame):
            matrix = columns[list(feature_order)].to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            matrix = np.array([columns[name] for name in feature_order], dtype=np.float64).T  # None -> NaN
    except (TypeError, ValueError):
        return None
    return matrix.astype(np.float32) if matrix.shape == (rows, len(feature_order)) else None


def flatten(columns: Columns, name: str, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """A list column's values back to back and each row's list length (-1 for None/NaN: Feast's "no value").

    Plain numpy over the rows: a request's one or few rows cost microseconds (Arrow's per-call overhead was 10x
    that), and a 200k-row training frame still takes well under a second per column.
    """
    values = _column(columns, name)
    if len(values) != rows:
        raise InvalidInputError(f"feature column {name!r} has {len(values)} rows, expected {rows}", field=name)
    sizes = np.empty(rows, dtype=np.int64)
    present = []
    for i, value in enumerate(values):
        if isinstance(value, list | tuple | np.ndarray):
            sizes[i] = len(value)
            if len(value):  # an empty list would be float64 and spoil the concatenation of strings
                present.append(np.asarray(value))
        elif value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
            sizes[i] = -1
        else:
            raise InvalidInputError(
                f"feature column {name!r} holds {type(value).__name__} values, expected lists", field=name
            )
    flat = np.concatenate(present) if present else np.empty(0, dtype=np.int64)
    return flat, sizes


def as_int64(values: np.ndarray, name: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"feature column {name!r} is not a list of integers: {exc}", field=name) from exc
