"""Feature columns -> the arrays an ONNX model takes: one transform for training and serving.

Training builds its inputs from a `training.datasets.training_set` frame, serving from the online reader's
dict of lists (`serving.features.OnlineFeatureReader.read`); both go through these functions, so a model never sees
a value prepared differently from the ones it learnt on. numpy, pandas and pyarrow only: serving imports this on a
host without torch.

Missing values stay NaN here. The propensity model (XGBoost) handles NaN natively; the next-action model imputes
inside its ONNX graph (missing indicator + standardisation learnt from the training split), so the graph takes raw
values and there are no normalisation constants to ship beside it.

Next-action inputs (`next_action_inputs`), `n` rows, `T = spec.seq_len` steps, right-padded (step 0 is the oldest
of the session's last T events, step `lengths - 1` the newest, padding after it):

    event_types       int64   [n, T]     0 = pad, 1..4 = EVENT_TYPES in order, 5 = an unknown type
    item_buckets      int64   [n, T]     0 = pad, else 1 + splitmix64(item_id) % spec.item_buckets
    category_buckets  int64   [n, T]     0 = pad, else 1 + splitmix64(category_id) % spec.category_buckets
                                         (an event without a category is -1, hashed like any id)
    step_features     float32 [n, T, 3]  STEP_FEATURES: log1p(seconds since the previous step; 0 at step 0),
                                         item seen earlier in the window (0/1), same item as the previous step (0/1)
    lengths           int64   [n]        valid steps; 0 for a session the online store does not know
    dense             float32 [n, D]     spec.dense_features, raw, NaN where missing

Hashing is a fixed arithmetic mix (splitmix64's finaliser), never Python's `hash()`: the buckets must be the same in
every process, on every host, for the model's whole life.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Final, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from journey.contracts import LAST_N_EVENTS, SESSION_ACTIVITY_FEATURES, USER_ACTIVITY_FEATURES
from journey.errors import InvalidInputError
from journey.events import EVENT_TYPES

Columns: TypeAlias = Mapping[str, Any] | pd.DataFrame

ITEMS: Final = "session_last_item_ids"
TYPES: Final = "session_last_event_types"
TIMES: Final = "session_last_event_ts"
CATEGORIES: Final = "session_last_category_ids"
NO_CATEGORY: Final = -1

PAD: Final = 0
STEP_FEATURES: Final = ("log_gap_seconds", "item_seen_before", "same_item_as_previous")
NEXT_ACTION_INPUT_NAMES: Final = (
    "event_types",
    "item_buckets",
    "category_buckets",
    "step_features",
    "lengths",
    "dense",
)
NEXT_ACTION_OUTPUT_NAME: Final = "probabilities"
INPUT_SPEC_VERSION: Final = 1
DEFAULT_DENSE_FEATURES: Final = tuple(
    name
    for name, kind in {**USER_ACTIVITY_FEATURES, **SESSION_ACTIVITY_FEATURES}.items()
    if kind in ("int64", "float64")
)
_CHUNK_ROWS = 65_536  # bounds the [rows, T, T] comparison of `item_seen_before`


# ---------------------------------------------------------------------------------------------------------------
# Numeric features
# ---------------------------------------------------------------------------------------------------------------


def _row_count(columns: Columns) -> int:
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
    rows = _row_count(columns)
    out = np.empty((rows, len(feature_order)), dtype=np.float32)
    for j, name in enumerate(feature_order):
        out[:, j] = _numeric(columns, name, rows)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Hashing
# ---------------------------------------------------------------------------------------------------------------


def stable_hash(ids: np.ndarray | Sequence[int]) -> np.ndarray:
    """splitmix64's output for each int64 id (as uint64): well mixed, and the same everywhere forever."""
    z = np.ascontiguousarray(ids, dtype=np.int64).view(np.uint64)
    z = z + np.uint64(0x9E3779B97F4A7C15)  # uint64 arrays wrap around silently: the arithmetic is mod 2**64
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    mixed: np.ndarray = z ^ (z >> np.uint64(31))
    return mixed


def hash_buckets(ids: np.ndarray | Sequence[int], buckets: int) -> np.ndarray:
    """Bucket 1..`buckets` of each id (0 is left for padding), int64."""
    result: np.ndarray = (stable_hash(ids) % np.uint64(buckets)).astype(np.int64) + 1
    return result


# ---------------------------------------------------------------------------------------------------------------
# Next action
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NextActionInputSpec:
    """Everything that shapes the next-action inputs; saved with the model (JSON) so serving rebuilds them exactly.

    `event_types`, `step_features` and `version` describe this module's code at training time: `from_dict` refuses
    a spec they no longer match rather than feed a model inputs laid out differently from those it learnt on.
    """

    seq_len: int = LAST_N_EVENTS
    item_buckets: int = 1 << 14
    category_buckets: int = 1 << 10
    dense_features: tuple[str, ...] = DEFAULT_DENSE_FEATURES
    event_types: tuple[str, ...] = EVENT_TYPES
    step_features: tuple[str, ...] = STEP_FEATURES
    version: int = INPUT_SPEC_VERSION

    def __post_init__(self) -> None:
        if not 1 <= self.seq_len <= LAST_N_EVENTS:
            raise InvalidInputError(
                f"seq_len must be in 1..{LAST_N_EVENTS} (the session lists hold at most that many events)",
                field="seq_len",
                value=self.seq_len,
            )
        for name in ("item_buckets", "category_buckets"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1", field=name, value=getattr(self, name))
        current = {"event_types": EVENT_TYPES, "step_features": STEP_FEATURES, "version": INPUT_SPEC_VERSION}
        for name, expected in current.items():
            if getattr(self, name) != expected:
                raise InvalidInputError(
                    f"input spec {name} {getattr(self, name)!r} differs from this code's {expected!r}: the model was "
                    "built for another version of journey.model_inputs",
                    field=name,
                    value=getattr(self, name),
                )

    @property
    def type_vocab_size(self) -> int:
        """Embedding rows for event types: pad, the known types, unknown."""
        return len(self.event_types) + 2

    @property
    def source_features(self) -> tuple[str, ...]:
        """The feature columns the inputs are built from."""
        return (ITEMS, TYPES, TIMES, CATEGORIES, *self.dense_features)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NextActionInputSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(f"unknown input spec key {unknown[0]!r}", field=unknown[0])
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)


def next_action_inputs(columns: Columns, spec: NextActionInputSpec) -> dict[str, np.ndarray]:
    """The next-action model's named inputs (see the module docstring) for next_action_v1 feature columns.

    A row whose lists are None/NaN (a session the online store does not know) gets `lengths` 0 and padding only.
    The item list sets the steps; a time or category list of another length than it (a state stored before that
    list existed) counts as unknown: gaps 0, category -1.
    """
    rows = _row_count(columns)
    items = _list_column(columns, ITEMS, pa.int64(), rows)
    own = _lengths(items)
    full = np.maximum(own, 0)
    lengths = np.minimum(full, spec.seq_len)
    valid = np.arange(spec.seq_len)[None, :] < lengths[:, None]

    def window(name: str, value_type: pa.DataType, fill: int) -> np.ndarray:
        lists = items if name == ITEMS else _list_column(columns, name, value_type, rows)
        flat = lists.flatten()
        if name == TYPES:
            flat = pc.add(pc.fill_null(pc.index_in(flat, value_set=pa.array(spec.event_types)), fill - 1), 1)
        values = np.asarray(pc.fill_null(flat.cast(pa.int64()), fill).to_numpy(zero_copy_only=False))
        return _window(values, _lengths(lists), full, spec.seq_len, fill)

    item_ids = window(ITEMS, pa.int64(), 0)
    categories = window(CATEGORIES, pa.int64(), NO_CATEGORY)
    return {
        "event_types": np.where(valid, window(TYPES, pa.string(), len(spec.event_types) + 1), PAD),
        "item_buckets": np.where(valid, hash_buckets(item_ids.ravel(), spec.item_buckets).reshape(valid.shape), PAD),
        "category_buckets": np.where(
            valid, hash_buckets(categories.ravel(), spec.category_buckets).reshape(valid.shape), PAD
        ),
        "step_features": _step_features(item_ids, window(TIMES, pa.int64(), 0), valid),
        "lengths": lengths,
        "dense": feature_matrix(columns, spec.dense_features),
    }


def _list_column(columns: Columns, name: str, value_type: pa.DataType, rows: int) -> pa.ListArray:
    """A list column as one Arrow list array; None and NaN (Feast's "no value") become null lists."""
    values = _column(columns, name)
    try:
        array = pa.array(values, type=pa.list_(value_type), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInputError(f"feature column {name!r} is not a list of {value_type}: {exc}", field=name) from exc
    if len(array) != rows:
        raise InvalidInputError(f"feature column {name!r} has {len(array)} rows, expected {rows}", field=name)
    return array


def _lengths(lists: pa.ListArray) -> np.ndarray:
    """Each row's list length, -1 for a null list."""
    return np.asarray(pc.fill_null(pc.list_value_length(lists), -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _window(flat: np.ndarray, own: np.ndarray, full: np.ndarray, seq_len: int, fill: int) -> np.ndarray:
    """int64 [rows, seq_len]: each row's last min(full, seq_len) values at the front, `fill` after them.

    `flat` holds the rows' lists back to back (`own` long each, -1 = null); a row whose length differs from `full`
    (the item list's) is all `fill`: its values would be attached to the wrong steps.
    """
    starts = np.r_[0, np.cumsum(np.maximum(own, 0))][:-1]
    keep = np.minimum(full, seq_len)
    step = np.arange(seq_len)[None, :]
    usable = (own == full)[:, None] & (step < keep[:, None])
    index = (starts + own - keep)[:, None] + step
    out = np.full((len(full), seq_len), fill, dtype=np.int64)
    out[usable] = flat[index[usable]]
    return out


def _step_features(items: np.ndarray, times: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """float32 [rows, T, 3]: log1p gap to the previous step, item seen earlier in the window, same item as before."""
    rows, steps = items.shape
    out = np.zeros((rows, steps, len(STEP_FEATURES)), dtype=np.float32)
    if steps > 1:
        follows = valid[:, 1:]  # step j >= 1 exists, so step j - 1 does too (right padding)
        gaps = np.clip(times[:, 1:] - times[:, :-1], 0, None)
        known = follows & (times[:, 1:] != 0) & (times[:, :-1] != 0)  # 0: no time stored for this state
        out[:, 1:, 0] = np.where(known, np.log1p(gaps.astype(np.float64)), 0.0)
        out[:, 1:, 2] = follows & (items[:, 1:] == items[:, :-1])
    earlier = np.tril(np.ones((steps, steps), dtype=bool), k=-1)  # [j, k]: k < j
    for start in range(0, rows, _CHUNK_ROWS):
        chunk = items[start : start + _CHUNK_ROWS]
        same = (chunk[:, :, None] == chunk[:, None, :]) & earlier
        out[start : start + _CHUNK_ROWS, :, 1] = same.any(axis=2) & valid[start : start + _CHUNK_ROWS]
    return out
