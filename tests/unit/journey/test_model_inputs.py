"""Model inputs: numeric matrices, stable hashing, and the next-action arrays built alike from a frame or the online
reader's dict of lists (unknown sessions included)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from journey.errors import InvalidInputError
from journey.model_inputs import (
    DEFAULT_DENSE_FEATURES,
    STEP_FEATURES,
    NextActionInputSpec,
    NextItemInputSpec,
    feature_matrix,
    hash_buckets,
    next_action_inputs,
    next_item_inputs,
    stable_hash,
)
from journey.onnx_contract import NEXT_ACTION_INPUT_NAMES, NEXT_ITEM_INPUT_NAMES

SPEC = NextActionInputSpec(seq_len=4, item_buckets=64, category_buckets=16)
PINNED_BUCKETS = [3504, 7362, 11926, 11297, 10732]  # ids 0, 1, 42, -1, 2**62 in 2**14 buckets


# --------------------------------------------------------------------------------------------------------------
# feature_matrix
# --------------------------------------------------------------------------------------------------------------


def test_feature_matrix_follows_the_given_order_with_nan_for_missing_values() -> None:
    online = {"b": [1, None, 3], "a": [0.5, 1.5, None], "unused": ["x", "y", "z"]}
    frame = pd.DataFrame({"a": [0.5, 1.5, np.nan], "b": pd.array([1, None, 3], dtype="Int64")})

    for columns in (online, frame):
        x = feature_matrix(columns, ["b", "a"])
        assert x.dtype == np.float32 and x.shape == (3, 2)
        np.testing.assert_array_equal(x, np.array([[1, 0.5], [np.nan, 1.5], [3, np.nan]], dtype=np.float32))


def test_feature_matrix_names_a_missing_or_non_numeric_column() -> None:
    with pytest.raises(InvalidInputError, match="'views_7d' is missing") as missing:
        feature_matrix({"a": [1.0]}, ["a", "views_7d"])
    assert missing.value.field == "views_7d"
    with pytest.raises(InvalidInputError, match="'a' is not numeric") as text:
        feature_matrix({"a": ["many"]}, ["a"])
    assert text.value.field == "a"
    with pytest.raises(InvalidInputError, match="'b' has shape") as short:
        feature_matrix({"a": [1.0, 2.0], "b": [1.0]}, ["a", "b"])
    assert short.value.field == "b"


def test_feature_matrix_of_no_rows_has_the_right_width() -> None:
    assert feature_matrix({"a": [], "b": []}, ["a", "b"]).shape == (0, 2)


# --------------------------------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------------------------------


def test_stable_hash_is_splitmix64() -> None:
    # published first outputs of splitmix64 seeded with 0: mix(1 * golden), mix(2 * golden); our input x is the state
    golden = 0x9E3779B97F4A7C15  # > int64 max: passed as the same 64 bits
    assert int(stable_hash([0])[0]) == 0xE220A8397B1DCDAF
    assert int(stable_hash(np.array([golden]).astype(np.uint64).view(np.int64))[0]) == 0x6E789E6AA1B965F4


def test_hash_buckets_are_pinned_in_range_and_spread() -> None:
    ids = np.arange(-5, 20_000)
    buckets = hash_buckets(ids, 64)
    assert buckets.dtype == np.int64
    assert buckets.min() == 1 and buckets.max() == 64  # 0 is the padding index
    assert np.bincount(buckets, minlength=65)[1:].min() > 200  # ~312 per bucket: well mixed
    # pinned: a change here silently re-buckets every item of every model already trained
    assert hash_buckets([0, 1, 42, -1, 2**62], 1 << 14).tolist() == PINNED_BUCKETS


# --------------------------------------------------------------------------------------------------------------
# Next-action inputs
# --------------------------------------------------------------------------------------------------------------


def _columns(rows: list[dict[str, Any] | None]) -> dict[str, list[Any]]:
    """Online-reader style columns for sessions given as event lists (None: a session the store does not know)."""
    keys = ("session_last_item_ids", "session_last_event_types", "session_last_event_ts", "session_last_category_ids")
    columns: dict[str, list[Any]] = {key: [None if r is None else r.get(key) for r in rows] for key in keys}
    for j, name in enumerate(DEFAULT_DENSE_FEATURES):
        columns[name] = [None if r is None else float(j) for r in rows]
    return columns


LONG = {
    "session_last_item_ids": [5, 6, 7, 6, 6],
    "session_last_event_types": ["view", "view", "add_to_cart", "click", "purchase"],
    "session_last_event_ts": [100, 110, 120, 120, 1_120],
    "session_last_category_ids": [1, 1, -1, 2, 2],
}
SHORT = {
    "session_last_item_ids": [9],
    "session_last_event_types": ["view"],
    "session_last_event_ts": [50],
    "session_last_category_ids": [3],
}


def test_inputs_keep_the_last_events_right_padded_with_their_vocabulary_codes() -> None:
    out = next_action_inputs(_columns([LONG, SHORT]), SPEC)

    assert tuple(out) == NEXT_ACTION_INPUT_NAMES
    assert out["lengths"].tolist() == [4, 1]
    # the last 4 of 5 events, oldest first; "click" is unknown (5), padding 0 after the newest
    assert out["event_types"].tolist() == [[1, 2, 5, 4], [1, 0, 0, 0]]
    assert out["item_buckets"][0].tolist() == hash_buckets([6, 7, 6, 6], 64).tolist()
    assert out["item_buckets"][1].tolist() == [hash_buckets([9], 64)[0], 0, 0, 0]
    assert out["category_buckets"][0].tolist() == hash_buckets([1, -1, 2, 2], 16).tolist()
    steps = out["step_features"]
    assert steps.shape == (2, 4, len(STEP_FEATURES)) and steps.dtype == np.float32
    np.testing.assert_allclose(steps[0, :, 0], [0.0, np.log1p(10), 0.0, np.log1p(1_000)], rtol=1e-6)
    assert steps[0, :, 1].tolist() == [0, 0, 1, 1]  # item 6 again at steps 2 and 3
    assert steps[0, :, 2].tolist() == [0, 0, 0, 1]
    assert steps[0, :, 3].tolist() == [0, 0, 0, 1]  # category 2 again; -1 (no category) never counts
    assert not steps[1].any()
    assert out["dense"].shape == (2, len(DEFAULT_DENSE_FEATURES)) and out["dense"].dtype == np.float32
    assert {k: v.dtype for k, v in out.items() if k not in ("step_features", "dense")} == dict.fromkeys(
        ("event_types", "item_buckets", "category_buckets", "lengths"), np.dtype(np.int64)
    )


def test_an_unknown_session_is_all_padding_and_missing_dense_values() -> None:
    out = next_action_inputs(_columns([None, SHORT]), SPEC)
    assert out["lengths"].tolist() == [0, 1]
    for name in ("event_types", "item_buckets", "category_buckets"):
        assert not out[name][0].any()
    assert not out["step_features"][0].any()
    assert np.isnan(out["dense"][0]).all() and not np.isnan(out["dense"][1]).any()


def test_a_frame_and_the_online_dict_give_identical_inputs() -> None:
    online = _columns([LONG, None, SHORT])
    frame = pd.DataFrame(online)
    # what Feast's historical retrieval returns: numpy arrays in object columns, NaN for an absent list
    for key in ("session_last_item_ids", "session_last_event_ts", "session_last_category_ids"):
        frame[key] = [np.nan if v is None else np.asarray(v, dtype=np.int64) for v in online[key]]
    frame["session_last_event_types"] = [
        np.nan if v is None else np.asarray(v, dtype=object) for v in online["session_last_event_types"]
    ]

    a, b = next_action_inputs(online, SPEC), next_action_inputs(frame, SPEC)

    for name in NEXT_ACTION_INPUT_NAMES:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_a_time_or_category_list_of_another_length_counts_as_unknown() -> None:
    stale = {**LONG, "session_last_event_ts": None, "session_last_category_ids": [1]}
    out = next_action_inputs(_columns([stale]), SPEC)
    assert out["lengths"].tolist() == [4]
    assert not out["step_features"][0, :, 0].any()  # no gaps
    assert out["category_buckets"][0].tolist() == hash_buckets([-1] * 4, 16).tolist()
    assert out["step_features"][0, :, 1].tolist() == [0, 0, 1, 1]  # items still tell repeats


def test_rows_around_a_stale_row_keep_their_own_values() -> None:
    stale = {**SHORT, "session_last_event_ts": [1, 2, 3], "session_last_category_ids": None}
    mixed = next_action_inputs(_columns([LONG, stale, SHORT, stale]), SPEC)
    clean = next_action_inputs(_columns([LONG, SHORT]), SPEC)
    for name in NEXT_ACTION_INPUT_NAMES:
        np.testing.assert_array_equal(mixed[name][[0, 2]], clean[name], err_msg=name)
    assert mixed["category_buckets"][1, 0] == hash_buckets([-1], 16)[0]


def test_a_missing_list_column_is_named() -> None:
    columns = _columns([SHORT])
    del columns["session_last_event_ts"]
    with pytest.raises(InvalidInputError, match="session_last_event_ts") as raised:
        next_action_inputs(columns, SPEC)
    assert raised.value.field == "session_last_event_ts"


def test_the_spec_round_trips_through_json_and_refuses_what_this_code_cannot_build() -> None:
    data = json.loads(json.dumps(SPEC.to_dict()))
    assert NextActionInputSpec.from_dict(data) == SPEC
    with pytest.raises(InvalidInputError, match="step_features") as raised:
        NextActionInputSpec.from_dict({**data, "step_features": ["log_gap_seconds"]})
    assert raised.value.field == "step_features"
    with pytest.raises(InvalidInputError, match="colour"):
        NextActionInputSpec.from_dict({**data, "colour": "red"})
    with pytest.raises(InvalidInputError, match="seq_len"):
        NextActionInputSpec(seq_len=21)


# --------------------------------------------------------------------------------------------------------------
# Next-item inputs
# --------------------------------------------------------------------------------------------------------------

ITEM_SPEC = NextItemInputSpec(seq_len=4, top_k=5)
UNKNOWN_TYPE = 5  # 1..4 are EVENT_TYPES in order


def _item_columns(rows: list[dict[str, Any] | None]) -> dict[str, list[Any]]:
    """next_item_v1 columns as the online reader returns them (None: a session the store does not know)."""
    keys = ("session_last_item_ids", "session_last_event_types")
    return {key: [None if r is None else r.get(key) for r in rows] for key in keys}


def test_next_item_inputs_keep_the_newest_items_right_padded_with_their_type_codes() -> None:
    out = next_item_inputs(_item_columns([LONG, SHORT]), ITEM_SPEC)

    assert tuple(out) == NEXT_ITEM_INPUT_NAMES
    assert {k: v.dtype for k, v in out.items()} == dict.fromkeys(NEXT_ITEM_INPUT_NAMES, np.dtype(np.int64))
    # the last 4 of 5 events, oldest first, as the shop's own item ids; "click" is an unknown type
    assert out["item_ids"].tolist() == [[6, 7, 6, 6], [9, 0, 0, 0]]
    assert out["event_types"].tolist() == [[1, 2, UNKNOWN_TYPE, 4], [1, 0, 0, 0]]
    assert out["lengths"].tolist() == [4, 1]


def test_next_item_inputs_of_an_unknown_or_empty_session_are_all_padding() -> None:
    empty: dict[str, Any] = {"session_last_item_ids": [], "session_last_event_types": []}
    out = next_item_inputs(_item_columns([None, empty, SHORT]), ITEM_SPEC)
    assert out["lengths"].tolist() == [0, 0, 1]
    assert not out["item_ids"][:2].any() and not out["event_types"][:2].any()
    assert out["item_ids"][2].tolist() == [9, 0, 0, 0]


def test_next_item_event_types_of_another_length_than_the_items_count_as_unknown() -> None:
    stale = {"session_last_item_ids": [3, 4], "session_last_event_types": ["view"]}
    untyped = {"session_last_item_ids": [8], "session_last_event_types": None}
    out = next_item_inputs(_item_columns([LONG, stale, untyped, SHORT]), ITEM_SPEC)

    assert out["lengths"].tolist() == [4, 2, 1, 1]
    assert out["item_ids"][1].tolist() == [3, 4, 0, 0]  # the items still count
    assert out["event_types"][1].tolist() == [UNKNOWN_TYPE, UNKNOWN_TYPE, 0, 0]
    assert out["event_types"][2].tolist() == [UNKNOWN_TYPE, 0, 0, 0]
    clean = next_item_inputs(_item_columns([LONG, SHORT]), ITEM_SPEC)
    for name in NEXT_ITEM_INPUT_NAMES:  # the rows around them keep their own values
        np.testing.assert_array_equal(out[name][[0, 3]], clean[name], err_msg=name)


def test_next_item_inputs_are_the_same_from_a_frame_and_from_the_online_dict() -> None:
    online = _item_columns([LONG, None, SHORT])
    # Feast's historical retrieval: numpy arrays in object columns, NaN for an absent list
    frame = pd.DataFrame(
        {
            "session_last_item_ids": pd.Series(
                [np.nan if v is None else np.asarray(v, dtype=np.int64) for v in online["session_last_item_ids"]],
                dtype=object,
            ),
            "session_last_event_types": pd.Series(
                [np.nan if v is None else np.asarray(v, dtype=object) for v in online["session_last_event_types"]],
                dtype=object,
            ),
        }
    )

    a, b = next_item_inputs(online, ITEM_SPEC), next_item_inputs(frame, ITEM_SPEC)

    for name in NEXT_ITEM_INPUT_NAMES:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_next_item_inputs_name_a_missing_list_column() -> None:
    columns = _item_columns([SHORT])
    del columns["session_last_event_types"]
    with pytest.raises(InvalidInputError, match="session_last_event_types") as raised:
        next_item_inputs(columns, ITEM_SPEC)
    assert raised.value.field == "session_last_event_types"


def test_the_next_item_spec_round_trips_through_json() -> None:
    data = json.loads(json.dumps(ITEM_SPEC.to_dict()))
    assert data == {"seq_len": 4, "top_k": 5, "event_types": list(ITEM_SPEC.event_types), "version": 1}
    assert NextItemInputSpec.from_dict(data) == ITEM_SPEC
    assert ITEM_SPEC.source_features == ("session_last_item_ids", "session_last_event_types")
    assert ITEM_SPEC.type_vocab_size == UNKNOWN_TYPE + 1  # pad, the known types, unknown


def test_the_next_item_spec_refuses_unknown_keys_and_what_this_code_cannot_build() -> None:
    data = ITEM_SPEC.to_dict()
    with pytest.raises(InvalidInputError, match="colour") as unknown:
        NextItemInputSpec.from_dict({**data, "colour": "red"})
    assert unknown.value.field == "colour"
    for seq_len in (0, 21):
        with pytest.raises(InvalidInputError, match="seq_len") as bad_len:
            NextItemInputSpec.from_dict({**data, "seq_len": seq_len})
        assert bad_len.value.field == "seq_len"
    with pytest.raises(InvalidInputError, match="top_k") as bad_k:
        NextItemInputSpec.from_dict({**data, "top_k": 0})
    assert bad_k.value.field == "top_k"
    with pytest.raises(InvalidInputError, match="event_types") as types:
        NextItemInputSpec.from_dict({**data, "event_types": ["view", "purchase"]})
    assert types.value.field == "event_types"
