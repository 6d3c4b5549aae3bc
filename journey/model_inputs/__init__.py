"""Feature columns -> the arrays an ONNX model takes: one transform for training and serving.

Training builds its inputs from a training set frame (`training.retrieval`), serving from the online reader's
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
Hashing is a fixed arithmetic mix (splitmix64's output, the id as its state), never Python's `hash()` (see
`hashing.py`).

    columns.py    <- reading feature columns: the numeric matrix (`feature_matrix`), list columns flattened
    hashing.py    <- stable_hash, hash_buckets
    specs.py      <- NextActionInputSpec, NextItemInputSpec: saved with the model, checked against this code
    sequences.py  <- next_action_inputs, next_item_inputs: the session window, step features

This module is the transform's API: training and serving import from here.
"""

from __future__ import annotations

from journey.model_inputs.columns import CATEGORIES, ITEMS, NO_CATEGORY, TIMES, TYPES, Columns, feature_matrix
from journey.model_inputs.hashing import hash_buckets, stable_hash
from journey.model_inputs.sequences import PAD, next_action_inputs, next_item_inputs
from journey.model_inputs.specs import (
    DEFAULT_DENSE_FEATURES,
    INPUT_SPEC_VERSION,
    NEXT_ITEM_SOURCE_FEATURES,
    STEP_FEATURES,
    NextActionInputSpec,
    NextItemInputSpec,
)

__all__ = [
    "CATEGORIES",
    "DEFAULT_DENSE_FEATURES",
    "INPUT_SPEC_VERSION",
    "ITEMS",
    "NEXT_ITEM_SOURCE_FEATURES",
    "NO_CATEGORY",
    "PAD",
    "STEP_FEATURES",
    "TIMES",
    "TYPES",
    "Columns",
    "NextActionInputSpec",
    "NextItemInputSpec",
    "feature_matrix",
    "hash_buckets",
    "next_action_inputs",
    "next_item_inputs",
    "stable_hash",
]
