"""The session models' inputs: each session's newest `seq_len` events as right-padded arrays (see the package
docstring for the layout), built from the same flattened lists for every list column."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

import numpy as np

from journey.model_inputs.columns import (
    CATEGORIES,
    ITEMS,
    NO_CATEGORY,
    TIMES,
    TYPES,
    Columns,
    as_int64,
    feature_matrix,
    flatten,
    row_count,
)
from journey.model_inputs.hashing import hash_buckets
from journey.model_inputs.specs import STEP_FEATURES, NextActionInputSpec, NextItemInputSpec

PAD: Final = 0
_CHUNK_ROWS = 65_536  # bounds the [rows, T, T] comparison of `item_seen_before`


def next_action_inputs(columns: Columns, spec: NextActionInputSpec) -> dict[str, np.ndarray]:
    """The next-action model's named inputs (see the module docstring) for next_action_v1 feature columns.

    A row whose lists are None/NaN (a session the online store does not know) gets `lengths` 0 and padding only.
    The item list sets the steps; a time or category list of another length than it (a state stored before that
    list existed) counts as unknown: gaps 0, category -1.
    """
    rows = row_count(columns)
    item_values, sizes = flatten(columns, ITEMS, rows)
    steps = _Steps.of(sizes, spec.seq_len)

    def window(name: str, fill: int) -> np.ndarray:
        values, own = (item_values, sizes) if name == ITEMS else flatten(columns, name, rows)
        return steps.window(as_int64(values, name), own, fill)

    item_ids = window(ITEMS, 0)
    categories = window(CATEGORIES, NO_CATEGORY)
    valid = steps.valid
    return {
        "event_types": _event_type_window(columns, steps, spec.event_types),
        "item_buckets": np.where(valid, hash_buckets(item_ids, spec.item_buckets), PAD),
        "category_buckets": np.where(valid, hash_buckets(categories, spec.category_buckets), PAD),
        "step_features": _step_features(item_ids, categories, window(TIMES, 0), valid),
        "lengths": steps.lengths,
        "dense": feature_matrix(columns, spec.dense_features),
    }


def _event_type_window(columns: Columns, steps: _Steps, event_types: tuple[str, ...]) -> np.ndarray:
    """int64 [rows, seq_len] event-type codes: 1.. in `event_types` order, one more for an unknown type, PAD after
    each row's steps; a type list of another length than the item list is all unknown (as `_Steps.window` says)."""
    codes = {kind: code for code, kind in enumerate(event_types, start=1)}
    unknown = len(event_types) + 1
    values, own = flatten(columns, TYPES, len(steps.sizes))
    coded = np.fromiter((codes.get(v, unknown) for v in values), dtype=np.int64, count=len(values))
    return np.where(steps.valid, steps.window(coded, own, unknown), PAD)


@dataclass(frozen=True)
class _Steps:
    """Where each row's kept values sit in the flattened item lists: computed once, used for every list column."""

    sizes: np.ndarray  # item list length per row, -1 for none
    lengths: np.ndarray  # kept steps per row: min(size, seq_len)
    valid: np.ndarray  # bool [rows, seq_len]
    gather: np.ndarray  # flat positions of the kept values, row-major over `valid`

    @classmethod
    def of(cls, sizes: np.ndarray, seq_len: int) -> _Steps:
        full = np.maximum(sizes, 0)
        lengths = np.minimum(full, seq_len)
        valid = np.arange(seq_len)[None, :] < lengths[:, None]
        first_kept = np.cumsum(full) - lengths  # start of a row's list + (size - kept)
        return cls(sizes, lengths, valid, (first_kept[:, None] + np.arange(seq_len)[None, :])[valid])

    def window(self, flat: np.ndarray, own: np.ndarray, fill: int) -> np.ndarray:
        """int64 [rows, seq_len] of one list column, `fill` after each row's kept values.

        A row whose list length differs from its item list's is all `fill`: its values would land on the wrong steps.
        """
        out = np.full(self.valid.shape, fill, dtype=np.int64)
        if np.array_equal(own, self.sizes):
            out[self.valid] = flat[self.gather]
            return out
        aligned = own == self.sizes
        usable = self.valid & aligned[:, None]
        shift = np.cumsum(np.maximum(own, 0)) - np.cumsum(np.maximum(self.sizes, 0))  # offset of this column's rows
        positions = self.gather + np.repeat(shift, self.lengths)
        out[usable] = flat[positions[usable[self.valid]]]
        return out


def _step_features(items: np.ndarray, categories: np.ndarray, times: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """float32 [rows, T, len(STEP_FEATURES)] (see the module docstring); repeats say where a session is heading:
    returning to an item is consideration, staying in one category is intent."""
    rows, steps = items.shape
    out = np.zeros((rows, steps, len(STEP_FEATURES)), dtype=np.float32)
    if steps > 1:
        follows = valid[:, 1:]  # step j >= 1 exists, so step j - 1 does too (right padding)
        gaps = np.clip(times[:, 1:] - times[:, :-1], 0, None)
        known = follows & (times[:, 1:] != 0) & (times[:, :-1] != 0)  # 0: no time stored for this state
        out[:, 1:, 0] = np.where(known, np.log1p(gaps.astype(np.float64)), 0.0)
        out[:, 1:, 2] = follows & (items[:, 1:] == items[:, :-1])
    out[:, :, 1] = _seen_before(items, valid)
    out[:, :, 3] = _seen_before(categories, valid & (categories != NO_CATEGORY))
    return out


@functools.cache
def _earlier(steps: int) -> np.ndarray:
    """bool [steps, steps]: [j, k] is True when k < j (cached, so read-only)."""
    mask = np.tril(np.ones((steps, steps), dtype=bool), k=-1)
    mask.flags.writeable = False
    return mask


def _seen_before(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """bool [rows, T]: the step's value occurs at an earlier valid step of the row."""
    earlier = _earlier(values.shape[1])
    out = np.zeros(values.shape, dtype=bool)
    for start in range(0, len(values), _CHUNK_ROWS):
        chunk, ok = values[start : start + _CHUNK_ROWS], valid[start : start + _CHUNK_ROWS]
        same = (chunk[:, :, None] == chunk[:, None, :]) & earlier & ok[:, None, :]
        out[start : start + _CHUNK_ROWS] = same.any(axis=2) & ok
    return out


def next_item_inputs(columns: Columns, spec: NextItemInputSpec) -> dict[str, np.ndarray]:
    """The recommender's named inputs (see the module docstring) for next_item_v1 feature columns.

    The same windowing as `next_action_inputs`: the newest `seq_len` events, a session the store does not know
    (None/NaN lists) gets `lengths` 0; an event-type list of another length than the item list counts as unknown.
    """
    rows = row_count(columns)
    item_values, sizes = flatten(columns, ITEMS, rows)
    steps = _Steps.of(sizes, spec.seq_len)
    return {
        "item_ids": steps.window(as_int64(item_values, ITEMS), sizes, 0),
        "event_types": _event_type_window(columns, steps, spec.event_types),
        "lengths": steps.lengths,
    }
