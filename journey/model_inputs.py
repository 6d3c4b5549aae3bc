"""Feature columns -> the arrays an ONNX model takes: one transform for training and serving.

Training builds its inputs from a `training.datasets.training_set` frame, serving from the online reader's
dict of lists (`serving.features.OnlineFeatureReader.read`); both go through these functions, so a model never sees
a value prepared differently from the ones it learnt on. numpy and pandas only: serving imports this on a host
without torch.

Missing values stay NaN here. The propensity model (XGBoost) handles NaN natively; the next-action model imputes
inside its ONNX graph (missing indicator + standardisation learnt from the training split), so the graph takes raw
values and there are no normalisation constants to ship beside it.

Next-action inputs (`next_action_inputs`), `n` rows, `T = spec.seq_len` steps, right-padded (step 0 is the oldest
of the session's last T events, step `lengths - 1` the newest, padding after it):

    event_types       int64   [n, T]     0 = pad, 1..4 = EVENT_TYPES in order, 5 = an unknown type
    item_buckets      int64   [n, T]     0 = pad, else 1 + splitmix64(item_id) % spec.item_buckets
    category_buckets  int64   [n, T]     0 = pad, else 1 + splitmix64(category_id) % spec.category_buckets
                                         (an event without a category is -1, hashed like any id)
    step_features     float32 [n, T, 4]  STEP_FEATURES: log1p(seconds since the previous step; 0 at step 0),
                                         item seen earlier in the window (0/1), same item as the previous step
                                         (0/1), category seen earlier in the window (0/1; -1 never counts)
    lengths           int64   [n]        valid steps; 0 for a session the online store does not know
    dense             float32 [n, D]     spec.dense_features, raw, NaN where missing

Serving, for a registered next-action version (the spec is in its params, as trained):

    spec = NextActionInputSpec.from_dict(params["input_spec"])
    columns = reader.read([{"user_id": 12, "session_id": "12-1788220800000"}])   # next_action_v1, dict of lists
    (probabilities,) = session.run(["probabilities"], next_action_inputs(columns, spec))   # [n, 5]

Next-item inputs (`next_item_inputs`), the same window of the session's last T events, right-padded:

    item_ids          int64   [n, T]     the shop's own item ids (0 after `lengths`): the recommender's graph maps
                                         them onto its vocabulary itself and answers in item ids too
    event_types       int64   [n, T]     as for next action
    lengths           int64   [n]        valid steps; 0 for a session the online store does not know

Hashing is a fixed arithmetic mix (splitmix64's output, the id as its state), never Python's `hash()`: the buckets
must be the same in every process, on every host, for the model's whole life.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Final, TypeAlias

import numpy as np
import pandas as pd

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
STEP_FEATURES: Final = ("log_gap_seconds", "item_seen_before", "same_item_as_previous", "category_seen_before")
NEXT_ITEM_SOURCE_FEATURES: Final = (ITEMS, TYPES)
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


def _check_seq_len(seq_len: int) -> None:
    if not 1 <= seq_len <= LAST_N_EVENTS:
        raise InvalidInputError(
            f"seq_len must be in 1..{LAST_N_EVENTS} (the session lists hold at most that many events)",
            field="seq_len",
            value=seq_len,
        )


def _check_current(spec: Any, current: Mapping[str, Any]) -> None:
    """Refuse a spec whose code-describing fields differ from this code: the model was built for other inputs."""
    for name, expected in current.items():
        if getattr(spec, name) != expected:
            raise InvalidInputError(
                f"input spec {name} {getattr(spec, name)!r} differs from this code's {expected!r}: the model was "
                "built for another version of journey.model_inputs",
                field=name,
                value=getattr(spec, name),
            )


def _spec_dict(spec: Any) -> dict[str, Any]:
    """A spec as JSON-ready values (tuples as lists), what the registry stores in the version's params."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items()}


def _spec_values(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """Stored params back to a spec's arguments; an unknown key is refused by name rather than ignored."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidInputError(f"unknown input spec key {unknown[0]!r}", field=unknown[0])
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


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
        _check_seq_len(self.seq_len)
        for name in ("item_buckets", "category_buckets"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1", field=name, value=getattr(self, name))
        current = {"event_types": EVENT_TYPES, "step_features": STEP_FEATURES, "version": INPUT_SPEC_VERSION}
        _check_current(self, current)

    @property
    def type_vocab_size(self) -> int:
        """Embedding rows for event types: pad, the known types, unknown."""
        return len(self.event_types) + 2

    @property
    def source_features(self) -> tuple[str, ...]:
        """The feature columns the inputs are built from."""
        return (ITEMS, TYPES, TIMES, CATEGORIES, *self.dense_features)

    def to_dict(self) -> dict[str, Any]:
        return _spec_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NextActionInputSpec:
        return cls(**_spec_values(cls, data))


def next_action_inputs(columns: Columns, spec: NextActionInputSpec) -> dict[str, np.ndarray]:
    """The next-action model's named inputs (see the module docstring) for next_action_v1 feature columns.

    A row whose lists are None/NaN (a session the online store does not know) gets `lengths` 0 and padding only.
    The item list sets the steps; a time or category list of another length than it (a state stored before that
    list existed) counts as unknown: gaps 0, category -1.
    """
    rows = _row_count(columns)
    item_values, sizes = _flatten(columns, ITEMS, rows)
    steps = _Steps.of(sizes, spec.seq_len)

    def window(name: str, fill: int) -> np.ndarray:
        values, own = (item_values, sizes) if name == ITEMS else _flatten(columns, name, rows)
        return steps.window(_as_int64(values, name), own, fill)

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
    values, own = _flatten(columns, TYPES, len(steps.sizes))
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


def _flatten(columns: Columns, name: str, rows: int) -> tuple[np.ndarray, np.ndarray]:
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


def _as_int64(values: np.ndarray, name: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"feature column {name!r} is not a list of integers: {exc}", field=name) from exc


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


# ---------------------------------------------------------------------------------------------------------------
# Next item
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NextItemInputSpec:
    """What shapes the recommender's inputs and outputs; saved with the model so serving rebuilds them exactly.

    `top_k` is the number of items the graph returns per row (a request asks for at most that many).
    """

    seq_len: int = 12
    top_k: int = 50
    event_types: tuple[str, ...] = EVENT_TYPES
    version: int = INPUT_SPEC_VERSION

    def __post_init__(self) -> None:
        _check_seq_len(self.seq_len)
        if self.top_k < 1:
            raise InvalidInputError("top_k must be >= 1", field="top_k", value=self.top_k)
        _check_current(self, {"event_types": EVENT_TYPES, "version": INPUT_SPEC_VERSION})

    @property
    def type_vocab_size(self) -> int:
        return len(self.event_types) + 2

    @property
    def source_features(self) -> tuple[str, ...]:
        return NEXT_ITEM_SOURCE_FEATURES

    def to_dict(self) -> dict[str, Any]:
        return _spec_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NextItemInputSpec:
        return cls(**_spec_values(cls, data))


def next_item_inputs(columns: Columns, spec: NextItemInputSpec) -> dict[str, np.ndarray]:
    """The recommender's named inputs (see the module docstring) for next_item_v1 feature columns.

    The same windowing as `next_action_inputs`: the newest `seq_len` events, a session the store does not know
    (None/NaN lists) gets `lengths` 0; an event-type list of another length than the item list counts as unknown.
    """
    rows = _row_count(columns)
    item_values, sizes = _flatten(columns, ITEMS, rows)
    steps = _Steps.of(sizes, spec.seq_len)
    return {
        "item_ids": steps.window(_as_int64(item_values, ITEMS), sizes, 0),
        "event_types": _event_type_window(columns, steps, spec.event_types),
        "lengths": steps.lengths,
    }
